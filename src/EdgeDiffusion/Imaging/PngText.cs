using System.IO.Compression;
using System.Text;

namespace EdgeDiffusion.Imaging;

/// <summary>One text chunk of a PNG file: keyword, text, and the chunk type it came from (tEXt, zTXt or iTXt).</summary>
public sealed record PngTextEntry(string Keyword, string Text, string ChunkType);

/// <summary>
/// Reads the text chunks of a PNG file (tEXt, zTXt and iTXt, compressed or not), e.g. the generation parameters that
/// EdgeDiffusion, AUTOMATIC1111 and others store under the keyword "parameters".
/// </summary>
public static class PngText
{
    // Compressed text larger than this is refused rather than inflated (a few bytes can inflate to gigabytes).
    private const int MaxInflatedBytes = 64 << 20;

    /// <summary>
    /// The text chunks of the PNG file at <paramref name="path"/>, in file order. The file is checked chunk by chunk
    /// (lengths and CRCs); a missing, unreadable, non-PNG or corrupt file is an <see cref="ImageException"/> naming it.
    /// </summary>
    public static IReadOnlyList<PngTextEntry> Read(string path) => Parse(ImageFiles.ReadAllBytes(path, "a PNG file"), path);

    /// <summary>The "parameters" text of the PNG at <paramref name="path"/> (how the image was made), or null when it has none.</summary>
    public static string? ReadParameters(string path) =>
        Read(path).FirstOrDefault(e => e.Keyword == PngWriter.ParametersKeyword)?.Text;

    /// <summary>The text chunks of PNG bytes held in memory; <paramref name="source"/> names them in errors.</summary>
    public static IReadOnlyList<PngTextEntry> Parse(ReadOnlySpan<byte> png, string source = "<PNG in memory>")
    {
        var entries = new List<PngTextEntry>();
        foreach (var chunk in PngChunks.Parse(png, source))
        {
            var data = png.Slice(chunk.DataStart, chunk.DataLength);
            switch (chunk.Type)
            {
                case "tEXt":
                {
                    string keyword = SplitKeyword(data, chunk, source, out var rest);
                    entries.Add(new PngTextEntry(keyword, Encoding.Latin1.GetString(rest), chunk.Type));
                    break;
                }
                case "zTXt":
                {
                    string keyword = SplitKeyword(data, chunk, source, out var rest);
                    if (rest.IsEmpty || rest[0] != 0)
                        throw Corrupt(source, chunk, "has an unknown compression method");
                    entries.Add(new PngTextEntry(keyword, Encoding.Latin1.GetString(Inflate(rest[1..], chunk, source)), chunk.Type));
                    break;
                }
                case "iTXt":
                {
                    string keyword = SplitKeyword(data, chunk, source, out var rest);
                    if (rest.Length < 2 || rest[0] > 1 || rest[1] != 0)
                        throw Corrupt(source, chunk, "has an invalid compression flag or method");
                    bool compressed = rest[0] == 1;
                    rest = rest[2..];
                    for (int field = 0; field < 2; field++) // language tag, translated keyword
                    {
                        int end = rest.IndexOf((byte)0);
                        if (end < 0) throw Corrupt(source, chunk, "lacks the NUL after its language tag or translated keyword");
                        rest = rest[(end + 1)..];
                    }
                    byte[] text = compressed ? Inflate(rest, chunk, source) : rest.ToArray();
                    entries.Add(new PngTextEntry(keyword, Encoding.UTF8.GetString(text), chunk.Type));
                    break;
                }
            }
        }
        return entries;
    }

    /// <summary>The keyword before the first NUL; <paramref name="rest"/> is what follows the NUL.</summary>
    private static string SplitKeyword(ReadOnlySpan<byte> data, PngChunk chunk, string source, out ReadOnlySpan<byte> rest)
    {
        int end = data.IndexOf((byte)0);
        if (end <= 0) throw Corrupt(source, chunk, end == 0 ? "has an empty keyword" : "has no NUL after its keyword");
        rest = data[(end + 1)..];
        return Encoding.Latin1.GetString(data[..end]);
    }

    private static byte[] Inflate(ReadOnlySpan<byte> compressed, PngChunk chunk, string source)
    {
        try
        {
            using var input = new ZLibStream(new MemoryStream(compressed.ToArray()), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int n;
            while ((n = input.Read(buffer)) > 0)
            {
                if (output.Length + n > MaxInflatedBytes)
                    throw Corrupt(source, chunk, $"inflates to over {MaxInflatedBytes >> 20} MiB of text; it is not a real text chunk");
                output.Write(buffer, 0, n);
            }
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw Corrupt(source, chunk, $"holds invalid compressed data ({e.Message.TrimEnd('.')})");
        }
    }

    private static ImageException Corrupt(string source, PngChunk chunk, string what) =>
        new(source, $"{chunk.Type} chunk at byte {chunk.Start} {what}; the file is corrupt, re-save it");
}
