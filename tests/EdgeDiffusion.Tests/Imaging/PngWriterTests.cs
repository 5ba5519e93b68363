using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using EdgeDiffusion.Imaging;
using SkiaSharp;

namespace EdgeDiffusion.Tests.Imaging;

public sealed class PngWriterTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly GenerationParameters Example =
        new("a red circle", "blurry", 42, 20, "euler", 7.5, 128, 128, "tiny-shapes");

    // Written out by hand: the format other Stable Diffusion tools use.
    private const string ExampleText =
        "a red circle\nNegative prompt: blurry\nSteps: 20, Sampler: euler, CFG scale: 7.5, Seed: 42, Size: 128x128, Model: tiny-shapes";

    [Theory]
    [InlineData("123456789", 0xCBF43926u)]                                       // the standard check value
    [InlineData("", 0x00000000u)]
    [InlineData("a", 0xE8B7BE43u)]
    [InlineData("The quick brown fox jumps over the lazy dog", 0x414FA339u)]
    [InlineData("IEND", 0xAE426082u)]                                            // the CRC ending every PNG file
    public void Crc32MatchesKnownVectors(string input, uint expected)
    {
        var bytes = Encoding.ASCII.GetBytes(input);
        Assert.Equal(expected, Crc32.Compute(bytes));
        Assert.Equal(expected, BitwiseCrc32(bytes));
        // Fed in two pieces, the running state gives the same CRC.
        int half = bytes.Length / 2;
        Assert.Equal(expected, Crc32.Finish(Crc32.Append(Crc32.Append(Crc32.Initial, bytes.AsSpan(0, half)), bytes.AsSpan(half))));
    }

    [Fact]
    public void Crc32AgreesWithTheBitwiseDefinitionOnRandomData()
    {
        var random = new Random(17);
        for (int i = 0; i < 200; i++)
        {
            var bytes = new byte[random.Next(0, 600)];
            random.NextBytes(bytes);
            Assert.Equal(BitwiseCrc32(bytes), Crc32.Compute(bytes));
        }
    }

    [Fact]
    public void OpaqueImageRoundTripsAsRgb()
    {
        var image = RandomImage(37, 23, opaque: true, seed: 1);
        byte[] png = PngWriter.Encode(image);
        var chunks = ChunkList(png);
        var ihdr = chunks[0];
        Assert.Equal("IHDR", ihdr.Type);
        Assert.Equal(37u, BinaryPrimitives.ReadUInt32BigEndian(ihdr.Data));
        Assert.Equal(23u, BinaryPrimitives.ReadUInt32BigEndian(ihdr.Data.AsSpan(4)));
        Assert.Equal(8, ihdr.Data[8]);   // bit depth
        Assert.Equal(2, ihdr.Data[9]);   // color type 2: RGB

        using var decoded = SKBitmap.Decode(png);
        Assert.Equal((37, 23), (decoded.Width, decoded.Height));
        for (int y = 0; y < 23; y++)
            for (int x = 0; x < 37; x++)
                Assert.Equal(image.GetPixel(x, y), decoded.GetPixel(x, y));
    }

    [Fact]
    public void TransparentImageRoundTripsAsRgba()
    {
        var image = RandomImage(19, 11, opaque: false, seed: 2);
        byte[] png = PngWriter.Encode(image, Example);
        Assert.Equal(6, ChunkList(png)[0].Data[9]); // color type 6: RGBA

        // Decode unpremultiplied so every byte, including under low alpha, comes back as written.
        using var codec = SKCodec.Create(SKData.CreateCopy(png));
        var info = new SKImageInfo(19, 11, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var pixels = new byte[19 * 11 * 4];
        Assert.Equal(SKCodecResult.Success, codec.GetPixels(info, pixels));
        Assert.Equal(image.Pixels, pixels);
        Assert.Equal(image.Pixels, RgbaImage.Decode(png).Pixels);
    }

    [Fact]
    public void ParametersChunkFollowsIhdrWithExactTextAndValidCrc()
    {
        byte[] png = PngWriter.Encode(RandomImage(16, 16, opaque: true, seed: 3), Example);
        Assert.Equal(ExampleText, Example.ToParametersText());

        var chunks = ChunkList(png); // also checks every chunk's CRC
        Assert.Equal("IHDR", chunks[0].Type);
        Assert.Equal("tEXt", chunks[1].Type);
        Assert.Equal([.. "parameters"u8, 0, .. Encoding.Latin1.GetBytes(ExampleText)], chunks[1].Data);
        Assert.Equal("IEND", chunks[^1].Type);
        Assert.Single(chunks, c => c.Type is "tEXt" or "iTXt" or "zTXt");
        Assert.Contains(chunks, c => c.Type == "IDAT");

        // The CRC stored after the chunk, recomputed here by the bitwise definition over type + data.
        int start = 8 + 12 + chunks[0].Data.Length;
        int length = chunks[1].Data.Length;
        Assert.Equal((uint)length, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(start)));
        Assert.Equal(BitwiseCrc32(png.AsSpan(start + 4, 4 + length)), BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(start + 8 + length)));

        // Without the inserted chunk the file is exactly SkiaSharp's own encoding of the pixels (RGB, zlib 6, all filters).
        byte[] withoutText = [.. png[..start], .. png[(start + 12 + length)..]];
        Assert.Equal(SkiaPng(RandomImage(16, 16, opaque: true, seed: 3)), withoutText);
    }

    [Fact]
    public void NonLatin1TextGoesToItxtAndLatin1ToText()
    {
        var japanese = Example with { Prompt = "赤い円、白い背景" };
        var extra = new Dictionary<string, string> { ["Software"] = "EdgeDiffusion", ["Comment"] = "café", ["Title"] = "猫" };
        byte[] png = PngWriter.Encode(RandomImage(8, 8, opaque: true, seed: 4), japanese, extra);

        var chunks = ChunkList(png);
        Assert.Equal(["IHDR", "iTXt", "tEXt", "tEXt", "iTXt"], chunks.Take(5).Select(c => c.Type));
        // iTXt: keyword, NUL, compression flag 0, method 0, empty language tag + NUL, empty translated keyword + NUL, UTF-8 text.
        Assert.Equal([.. "parameters"u8, 0, 0, 0, 0, 0, .. Encoding.UTF8.GetBytes(japanese.ToParametersText())], chunks[1].Data);
        Assert.Equal([.. "Software"u8, 0, .. "EdgeDiffusion"u8], chunks[2].Data);
        Assert.Equal([.. "Comment"u8, 0, (byte)'c', (byte)'a', (byte)'f', 0xE9], chunks[3].Data);
        Assert.Equal([.. "Title"u8, 0, 0, 0, 0, 0, 0xE7, 0x8C, 0xAB], chunks[4].Data);

        string path = Path.Combine(_dir, "jp.png");
        PngWriter.Write(path, RandomImage(8, 8, opaque: true, seed: 4), japanese, extra);
        Assert.Equal(
            [
                new PngTextEntry("parameters", japanese.ToParametersText(), "iTXt"),
                new PngTextEntry("Software", "EdgeDiffusion", "tEXt"),
                new PngTextEntry("Comment", "café", "tEXt"),
                new PngTextEntry("Title", "猫", "iTXt"),
            ],
            PngText.Read(path));
        Assert.Equal(japanese.ToParametersText(), PngText.ReadParameters(path));
    }

    [Fact]
    public void IdenticalInputsGiveIdenticalBytes()
    {
        var a = RandomImage(64, 48, opaque: true, seed: 5);
        var b = new RgbaImage(64, 48, (byte[])a.Pixels.Clone());
        byte[] first = PngWriter.Encode(a, Example);
        Assert.Equal(first, PngWriter.Encode(b, Example with { }));

        string one = Path.Combine(_dir, "one.png"), two = Path.Combine(_dir, "sub", "two.png");
        PngWriter.Write(one, a, Example);
        Thread.Sleep(1100); // a timestamp, if one were written, would differ
        PngWriter.Write(two, b, Example);
        Assert.Equal(first, File.ReadAllBytes(one));
        Assert.Equal(first, File.ReadAllBytes(two));
        // A changed pixel or parameter changes the file.
        Assert.NotEqual(first, PngWriter.Encode(a, Example with { Seed = 43 }));
    }

    [Fact]
    public void WriteReplacesAtomicallyAndLeavesNoTemporaryFiles()
    {
        string path = Path.Combine(_dir, "out.png");
        File.WriteAllText(path, "old");
        var image = RandomImage(10, 10, opaque: true, seed: 6);
        PngWriter.Write(path, image);
        Assert.Equal(PngWriter.Encode(image), File.ReadAllBytes(path));
        Assert.Equal(["out.png"], Directory.GetFiles(_dir).Select(Path.GetFileName));
        Assert.Empty(PngText.Read(path));
        Assert.Null(PngText.ReadParameters(path));

        var e = Assert.Throws<ImageException>(() => PngWriter.Write(_dir, image));
        Assert.StartsWith(_dir + ": ", e.Message);
        string blocked = Path.Combine(path, "under-a-file.png"); // its folder is a file
        e = Assert.Throws<ImageException>(() => PngWriter.Write(blocked, image));
        Assert.StartsWith(blocked + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(PngWriter.Encode(image), File.ReadAllBytes(path));
    }

    [Fact]
    public void BadKeywordsAndTextsAreArgumentErrors()
    {
        var image = new RgbaImage(2, 2);
        InvalidArgumentException Fails(string keyword, string text) =>
            Assert.Throws<InvalidArgumentException>(() => PngWriter.Encode(image, null, [new(keyword, text)]));
        Fails("", "x");
        Fails(new string('k', 80), "x");
        Fails(" lead", "x");
        Fails("trail ", "x");
        Fails("two  spaces", "x");
        Fails("tab\tkey", "x");
        Fails("猫", "x");
        Fails("Comment", "nul\0inside");
        Fails("Comment", "broken \uD800 surrogate");
        Assert.Throws<InvalidArgumentException>(() => PngWriter.Encode(image, Example, [new("parameters", "again")]));
        Assert.Throws<InvalidArgumentException>(() => PngWriter.Encode(image, null, [new("a", "1"), new("a", "2")]));
        // Edge cases that are allowed.
        PngWriter.Encode(image, null, [new(new string('k', 79), ""), new("¡Olé ÿ", "x")]);
    }

    [Fact]
    public void ParametersTextFormat()
    {
        Assert.Equal(
            "a cat\nSteps: 30, Sampler: ddim, CFG scale: 7, Seed: 18446744073, Size: 512x768, Model: sd-1.5",
            new GenerationParameters("a cat", null, 18446744073, 30, "ddim", 7, 512, 768, "sd-1.5").ToParametersText());
        Assert.Equal(
            "line one\nline two\nSteps: 4, Sampler: euler, CFG scale: 1.25, Seed: 0, Size: 64x64, Model: m, Denoising strength: 0.75",
            new GenerationParameters("line one\nline two", "", 0, 4, "euler", 1.25, 64, 64, "m", 0.75).ToParametersText());
        // Names with ", ", ":" or line breaks are JSON-quoted so the line still splits on ", ".
        Assert.Equal(
            "p\nSteps: 1, Sampler: \"a, b\", CFG scale: 0.5, Seed: -1, Size: 8x8, Model: \"C:\\\\models\\\\x \\\"y\\\"\\nz\"",
            new GenerationParameters("p", null, -1, 1, "a, b", 0.5, 8, 8, "C:\\models\\x \"y\"\nz").ToParametersText());
    }

    [Fact]
    public void ReaderHandlesCompressedChunksFromOtherTools()
    {
        // A PNG from "another tool": our pixels plus zTXt and compressed iTXt chunks built here byte by byte.
        byte[] png = PngWriter.Encode(new RgbaImage(4, 4));
        var chunks = ChunkList(png);
        byte[] ztxt = [.. "prompt"u8, 0, 0, .. Deflate(Encoding.Latin1.GetBytes("{\"1\": {\"inputs\": \"café\"}}"))];
        byte[] itxt = [.. "workflow"u8, 0, 1, 0, .. "ja"u8, 0, .. Encoding.UTF8.GetBytes("ワークフロー"), 0, .. Deflate(Encoding.UTF8.GetBytes("ノード"))];
        var rebuilt = new MemoryStream();
        rebuilt.Write(png, 0, 8);
        WriteChunk(rebuilt, "IHDR", chunks[0].Data);
        WriteChunk(rebuilt, "zTXt", ztxt);
        foreach (var chunk in chunks.Skip(1).SkipLast(1)) WriteChunk(rebuilt, chunk.Type, chunk.Data);
        WriteChunk(rebuilt, "iTXt", itxt); // after the image data, as allowed
        WriteChunk(rebuilt, "IEND", []);
        string path = Path.Combine(_dir, "other-tool.png");
        File.WriteAllBytes(path, rebuilt.ToArray());

        Assert.Equal(
            [new PngTextEntry("prompt", "{\"1\": {\"inputs\": \"café\"}}", "zTXt"), new PngTextEntry("workflow", "ノード", "iTXt")],
            PngText.Read(path));
        Assert.Equal(new byte[16 * 4], RgbaImage.Load(path).Pixels); // and it is still a valid PNG
    }

    [Fact]
    public void ReaderRejectsMissingNonPngAndCorruptFilesNamingThem()
    {
        string missing = Path.Combine(_dir, "missing.png");
        AssertNames(Assert.Throws<ImageException>(() => PngText.Read(missing)), missing, "not found");

        string jpeg = Path.Combine(_dir, "photo.jpg");
        using (var bitmap = new SKBitmap(4, 4))
        using (var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90))
            File.WriteAllBytes(jpeg, data.ToArray());
        AssertNames(Assert.Throws<ImageException>(() => PngText.Read(jpeg)), jpeg, "not a PNG");

        byte[] png = PngWriter.Encode(RandomImage(8, 8, opaque: true, seed: 7), Example);
        string corrupt = Path.Combine(_dir, "corrupt.png");
        byte[] flipped = (byte[])png.Clone();
        flipped[8 + 25 + 8 + 3] ^= 0x20; // a letter of "parameters" in the tEXt chunk
        File.WriteAllBytes(corrupt, flipped);
        AssertNames(Assert.Throws<ImageException>(() => PngText.Read(corrupt)), corrupt, "CRC");

        string truncated = Path.Combine(_dir, "truncated.png");
        File.WriteAllBytes(truncated, png[..(png.Length - 6)]);
        AssertNames(Assert.Throws<ImageException>(() => PngText.Read(truncated)), truncated, "truncated");
    }

    [Fact]
    public void MutatedFilesGiveOnlyImageExceptions()
    {
        byte[] png = PngWriter.Encode(RandomImage(8, 8, opaque: false, seed: 8), Example, [new("Title", "猫")]);
        var random = new Random(23);
        for (int i = 0; i < 3000; i++)
        {
            byte[] bytes = (byte[])png.Clone();
            int edits = random.Next(1, 4);
            for (int e = 0; e < edits; e++) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            if (random.Next(4) == 0) bytes = bytes[..random.Next(bytes.Length)];
            try { PngText.Parse(bytes, "mutant.png"); }
            catch (ImageException e) { Assert.StartsWith("mutant.png: ", e.Message); }
        }
    }

    private static void AssertNames(ImageException e, string path, string mention)
    {
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(mention, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    private static RgbaImage RandomImage(int width, int height, bool opaque, int seed)
    {
        var image = new RgbaImage(width, height);
        new Random(seed).NextBytes(image.Pixels);
        if (opaque) for (int i = 3; i < image.Pixels.Length; i += 4) image.Pixels[i] = 255;
        else image.Pixels[3] = 0;
        return image;
    }

    private static byte[] SkiaPng(RgbaImage image)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
                bitmap.SetPixel(x, y, image.GetPixel(x, y));
        using var pixmap = bitmap.PeekPixels();
        using var data = pixmap.Encode(new SKPngEncoderOptions(SKPngEncoderFilterFlags.AllFilters, 6));
        return data!.ToArray();
    }

    /// <summary>CRC-32 straight from its definition, one bit at a time (independent of the table-driven code under test).</summary>
    internal static uint BitwiseCrc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320 & (0u - (crc & 1)));
        }
        return ~crc;
    }

    internal sealed record Chunk(string Type, byte[] Data);

    /// <summary>The chunk list of a PNG, parsed here independently; asserts the signature and every CRC.</summary>
    internal static List<Chunk> ChunkList(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png[..8]);
        var chunks = new List<Chunk>();
        int at = 8;
        while (at < png.Length)
        {
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
            string type = Encoding.ASCII.GetString(png, at + 4, 4);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            Assert.True(BitwiseCrc32(png.AsSpan(at + 4, 4 + length)) == crc, $"bad CRC on {type} at {at}");
            chunks.Add(new Chunk(type, png[(at + 8)..(at + 8 + length)]));
            at += 12 + length;
        }
        Assert.Equal(png.Length, at);
        Assert.Equal("IEND", chunks[^1].Type);
        return chunks;
    }

    private static void WriteChunk(Stream output, string type, byte[] data)
    {
        var header = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, header.AsSpan(4));
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, BitwiseCrc32([.. header[4..], .. data]));
        output.Write(header);
        output.Write(data);
        output.Write(crc);
    }

    private static byte[] Deflate(byte[] data)
    {
        var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.Optimal, leaveOpen: true)) z.Write(data);
        return output.ToArray();
    }
}
