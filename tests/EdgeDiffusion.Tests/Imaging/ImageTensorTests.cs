using EdgeDiffusion.Imaging;
using SkiaSharp;

namespace EdgeDiffusion.Tests.Imaging;

public sealed class ImageTensorTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(-1f, 0)]            // (-1/2 + 0.5)·255 = 0
    [InlineData(1f, 255)]           // 1·255
    [InlineData(0f, 128)]           // 0.5·255 = 127.5, half to even → 128
    [InlineData(0.5f, 191)]         // 0.75·255 = 191.25
    [InlineData(-0.5f, 64)]         // 0.25·255 = 63.75
    [InlineData(2f, 255)]           // clamped
    [InlineData(1.0001f, 255)]
    [InlineData(-3f, 0)]            // clamped
    [InlineData(-1.0001f, 0)]
    [InlineData(float.PositiveInfinity, 255)]
    [InlineData(float.NegativeInfinity, 0)]
    [InlineData(float.NaN, 0)]
    public void DecoderValueToPixelByHand(float x, int expected) => Assert.Equal(expected, ImageTensor.ToPixel(x));

    [Fact]
    public void DecoderValueToPixelMatchesIntegerRoundHalfEven()
    {
        // x = k/128 - 1 makes x/2 + 0.5 = k/256 exactly, so (x/2 + 0.5)·255 = 255k/256 with no float error:
        // the expected byte is 255k/256 rounded half to even, done here in integers.
        for (int k = 0; k <= 256; k++)
        {
            float x = k / 128f - 1f;
            int q = 255 * k, whole = q / 256, rest = q % 256;
            int expected = rest > 128 || (rest == 128 && whole % 2 == 1) ? whole + 1 : whole;
            Assert.Equal(expected, ImageTensor.ToPixel(x));
        }
    }

    [Fact]
    public void FloatProductsThatLandOnHalvesRoundToEven()
    {
        // For v = x/2 + 0.5 in [0.5, 1) the float32 product v·255 is rounded to multiples of 2^-16, so some v near
        // (k + 0.5)/255 give exactly k + 0.5. The float32 product is the exact product (a double holds it: 24 + 8 bits)
        // rounded once to float. Half to even gives k for even k where half away from zero would give k + 1.
        int evenTies = 0, oddTies = 0;
        for (int k = 128; k < 255; k++)
        {
            float near = (float)((k + 0.5) / 255);
            for (int step = -3; step <= 3; step++)
            {
                float v = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(near) + step);
                if (v < 0.5f || v >= 1f || (float)(v * 255.0) != k + 0.5f) continue;
                float x = 2f * v - 1f; // exact for v in [0.5, 1), and x/2 + 0.5 gives v back exactly
                Assert.Equal(v, x / 2f + 0.5f);
                Assert.Equal(k % 2 == 0 ? k : k + 1, ImageTensor.ToPixel(x));
                if (k % 2 == 0) evenTies++; else oddTies++;
            }
        }
        Assert.True(evenTies >= 10 && oddTies >= 10, $"only {evenTies} even and {oddTies} odd ties found");
    }

    [Fact]
    public void PixelToValueIsTheInverseFormula()
    {
        Assert.Equal(-1f, ImageTensor.ToValue(0));
        Assert.Equal(1f, ImageTensor.ToValue(255));
        for (int p = 0; p <= 255; p++)
        {
            Assert.Equal(p / 255.0 * 2 - 1, ImageTensor.ToValue((byte)p), 1e-6);
            Assert.Equal(p, ImageTensor.ToPixel(ImageTensor.ToValue((byte)p)));
        }
    }

    [Fact]
    public void BatchSplitsIntoImagesInNchwOrder()
    {
        float[] values = [-1f, 0f, 1f, 0.5f, -0.5f, 3f];
        byte[] bytes = [0, 128, 255, 191, 64, 255];
        const int batch = 2, height = 2, width = 3;
        // Element [n, c, y, x] sits at ((n·3 + c)·height + y)·width + x; give each a value from the table by that index.
        var data = new float[batch * 3 * height * width];
        for (int i = 0; i < data.Length; i++) data[i] = values[i % 6];

        var images = ImageTensor.ToImages(data, batch, 3, height, width);
        Assert.Equal(batch, images.Length);
        for (int n = 0; n < batch; n++)
        {
            Assert.Equal(width, images[n].Width);
            Assert.Equal(height, images[n].Height);
            Assert.True(images[n].IsOpaque);
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    var pixel = images[n].GetPixel(x, y);
                    int Index(int c) => ((n * 3 + c) * height + y) * width + x;
                    Assert.Equal(bytes[Index(0) % 6], pixel.Red);
                    Assert.Equal(bytes[Index(1) % 6], pixel.Green);
                    Assert.Equal(bytes[Index(2) % 6], pixel.Blue);
                    Assert.Equal(255, pixel.Alpha);
                }
        }
        var second = ImageTensor.ToImage(data, batch, 3, height, width, 1);
        Assert.Equal(images[1].Pixels, second.Pixels);
        Assert.Equal(images[0].Pixels, ImageTensor.ToImages(data, [2L, 3, 2, 3])[0].Pixels);
    }

    [Fact]
    public void BadShapesAreArgumentErrors()
    {
        var data = new float[2 * 3 * 4 * 4];
        Assert.Contains("channels", Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImages(data, 2, 4, 4, 3)).Message);
        Assert.Contains("nchw", Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImages(data, 1, 3, 4, 4)).Message);
        Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImages(data, 0, 3, 4, 4));
        Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImages(data, 2, 3, -4, -4));
        Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImages(data, [2L, 3, 4]));
        Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToImage(data, 2, 3, 4, 4, 2));
    }

    [Fact]
    public void ImagesToTensorIsPlanarInTheValueFormula()
    {
        var image = new RgbaImage(3, 2);
        var random = new Random(3);
        random.NextBytes(image.Pixels);
        var tensor = ImageTensor.ToTensor(image);
        Assert.Equal(3 * 6, tensor.Length);
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++)
            {
                var p = image.GetPixel(x, y);
                Assert.Equal(p.Red / 255.0 * 2 - 1, tensor[0 * 6 + y * 3 + x], 1e-6);
                Assert.Equal(p.Green / 255.0 * 2 - 1, tensor[1 * 6 + y * 3 + x], 1e-6);
                Assert.Equal(p.Blue / 255.0 * 2 - 1, tensor[2 * 6 + y * 3 + x], 1e-6);
            }
        var batch = ImageTensor.ToTensor([image, image]);
        Assert.Equal(tensor, batch[..18]);
        Assert.Equal(tensor, batch[18..]);
        Assert.Throws<InvalidArgumentException>(() => ImageTensor.ToTensor([image, new RgbaImage(2, 3)]));
        // And back: the decoder direction gives the same bytes (alpha becomes 255).
        var back = ImageTensor.ToImages(tensor, 1, 3, 2, 3)[0];
        for (int i = 0; i < image.Pixels.Length; i++)
            Assert.Equal(i % 4 == 3 ? 255 : image.Pixels[i], back.Pixels[i]);
    }

    [Fact]
    public void InitImageOfTheRequestedSizeIsConvertedPixelForPixel()
    {
        var random = new Random(11);
        var pixels = new byte[8 * 4 * 4];
        random.NextBytes(pixels);
        for (int i = 3; i < pixels.Length; i += 4) pixels[i] = 255;
        string path = WritePng("init.png", 8, 4, pixels);
        byte[] before = File.ReadAllBytes(path);

        var tensor = ImageTensor.LoadInitImage(path, 8, 4);

        Assert.Equal(3 * 8 * 4, tensor.Length);
        for (int i = 0; i < 32; i++)
            for (int c = 0; c < 3; c++)
                Assert.Equal(pixels[4 * i + c] / 255.0 * 2 - 1, tensor[c * 32 + i], 1e-6);
        Assert.Equal(before, File.ReadAllBytes(path)); // the input is not modified
    }

    [Fact]
    public void TransparencyIsCompositedOnWhite()
    {
        byte[] pixels =
        [
            200, 100, 0, 0,      // fully transparent: white
            200, 100, 0, 255,    // opaque: unchanged
            200, 100, 0, 128,    // half: c·a/255 + 255·(1 − a/255)
            10, 20, 30, 1,
        ];
        string path = WritePng("alpha.png", 2, 2, pixels);
        var tensor = ImageTensor.LoadInitImage(path, 2, 2);
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 3; c++)
            {
                double a = pixels[4 * i + 3] / 255.0;
                double composited = Math.Round(pixels[4 * i + c] * a + 255 * (1 - a));
                Assert.Equal(composited / 255 * 2 - 1, tensor[c * 4 + i], 1e-6);
            }
        Assert.Equal(1f, tensor[0]);
        Assert.Equal(200 / 255.0 * 2 - 1, tensor[1], 1e-6);
    }

    [Fact]
    public void InitImageIsResizedToTheRequestedSize()
    {
        // 64x48: left half red, right half blue.
        var pixels = new byte[64 * 48 * 4];
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 64; x++)
            {
                int i = (y * 64 + x) * 4;
                pixels[i] = (byte)(x < 32 ? 255 : 0);
                pixels[i + 2] = (byte)(x < 32 ? 0 : 255);
                pixels[i + 3] = 255;
            }
        string path = WritePng("wide.png", 64, 48, pixels);
        foreach (var (w, h) in new[] { (32, 16), (128, 96), (16, 64), (64, 48) })
        {
            var tensor = ImageTensor.LoadInitImage(path, w, h);
            Assert.Equal(3 * w * h, tensor.Length);
            int plane = w * h;
            for (int y = 0; y < h; y++)
            {
                // The outer quarters are far from the edge: pure red on the left, pure blue on the right, no green anywhere.
                int left = y * w + w / 8, right = y * w + w - 1 - w / 8;
                Assert.Equal(1f, tensor[left], 0.02f);
                Assert.Equal(-1f, tensor[2 * plane + left], 0.02f);
                Assert.Equal(-1f, tensor[right], 0.02f);
                Assert.Equal(1f, tensor[2 * plane + right], 0.02f);
            }
            for (int i = 0; i < plane; i++) Assert.Equal(-1f, tensor[plane + i], 0.02f);
        }
    }

    [Fact]
    public void ShrinkingAveragesInsteadOfAliasing()
    {
        // A one-pixel checkerboard of black and white shrunk 8 times is mid-gray everywhere (127.5) when filtered;
        // point sampling would give pure black or white.
        var image = new RgbaImage(64, 64);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
            {
                byte v = (byte)((x + y) % 2 == 0 ? 255 : 0);
                image.SetPixel(x, y, new SKColor(v, v, v, 255));
            }
        var small = image.Resize(8, 8);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                Assert.InRange(small.GetPixel(x, y).Red, 112, 143);
    }

    [Fact]
    public void UniformImageStaysUniformWhenResized()
    {
        var image = new RgbaImage(10, 6);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 10; x++)
                image.SetPixel(x, y, new SKColor(30, 144, 250, 255));
        foreach (var (w, h) in new[] { (40, 24), (5, 3), (7, 13) })
        {
            var resized = image.Resize(w, h);
            Assert.Equal((w, h), (resized.Width, resized.Height));
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    Assert.Equal(new SKColor(30, 144, 250, 255), resized.GetPixel(x, y));
        }
    }

    [Fact]
    public void MissingInitImageNamesTheFile()
    {
        string path = Path.Combine(_dir, "no-such-image.png");
        var e = Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(path, 64, 64));
        AssertOneLineNaming(e, path, "not found");
        e = Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(_dir, 64, 64));
        AssertOneLineNaming(e, _dir, "folder");
    }

    [Fact]
    public void GarbageAndTextFilesAreNotImages()
    {
        string text = Path.Combine(_dir, "prompt.txt");
        File.WriteAllText(text, "a red circle on a white background\n");
        AssertOneLineNaming(Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(text, 8, 8)), text, "not an image");

        string empty = Path.Combine(_dir, "empty.png");
        File.WriteAllBytes(empty, []);
        AssertOneLineNaming(Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(empty, 8, 8)), empty, "empty");

        string garbage = Path.Combine(_dir, "garbage.png");
        var random = new Random(5);
        for (int i = 0; i < 50; i++)
        {
            var bytes = new byte[random.Next(1, 2048)];
            random.NextBytes(bytes);
            File.WriteAllBytes(garbage, bytes);
            AssertOneLineNaming(Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(garbage, 8, 8)), garbage);
        }
    }

    [Fact]
    public void TruncatedOrCorruptPngIsRejected()
    {
        var random = new Random(9);
        var pixels = new byte[32 * 32 * 4];
        random.NextBytes(pixels); // noise does not compress, so the image data is most of the file
        string good = WritePng("good.png", 32, 32, pixels);
        byte[] bytes = File.ReadAllBytes(good);

        string truncated = Path.Combine(_dir, "truncated.png");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        AssertOneLineNaming(Assert.Throws<ImageException>(() => RgbaImage.Load(truncated)), truncated);

        // A PNG signature and nothing usable after it.
        string headerOnly = Path.Combine(_dir, "header-only.png");
        File.WriteAllBytes(headerOnly, bytes[..8]);
        AssertOneLineNaming(Assert.Throws<ImageException>(() => RgbaImage.Load(headerOnly)), headerOnly);
    }

    [Fact]
    public void MutatedImagesGiveOnlyImageExceptions()
    {
        var random = new Random(31);
        var pixels = new byte[24 * 16 * 4];
        random.NextBytes(pixels);
        byte[] png = File.ReadAllBytes(WritePng("seed.png", 24, 16, pixels));
        byte[] jpeg;
        using (var bitmap = new SKBitmap(24, 16))
        using (var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90))
            jpeg = data.ToArray();
        int decoded = 0;
        for (int i = 0; i < 600; i++)
        {
            byte[] bytes = (byte[])(i % 2 == 0 ? png : jpeg).Clone();
            for (int e = random.Next(1, 4); e > 0; e--) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            if (random.Next(4) == 0) bytes = bytes[..random.Next(1, bytes.Length)];
            try
            {
                var image = RgbaImage.Decode(bytes, "mutant");
                Assert.True(image.Width > 0 && image.Height > 0);
                decoded++;
            }
            catch (ImageException e) { Assert.StartsWith("mutant: ", e.Message); }
        }
        Assert.InRange(decoded, 1, 599); // some mutants still decode (JPEG data is forgiving), some do not
    }

    [Fact]
    public void HugeDeclaredSizeIsRefusedBeforeAllocating()
    {
        // A valid little PNG whose IHDR (CRC fixed up) claims 20000x20000 pixels: 400 megapixels, over the limit.
        byte[] png = File.ReadAllBytes(WritePng("small.png", 2, 2, new byte[16]));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), 20000);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), 20000);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(29), PngWriterTests.BitwiseCrc32(png.AsSpan(12, 17)));
        string path = Path.Combine(_dir, "huge.png");
        File.WriteAllBytes(path, png);
        AssertOneLineNaming(Assert.Throws<ImageException>(() => ImageTensor.LoadInitImage(path, 64, 64)), path, "megapixel");
    }

    [Fact]
    public void ExifOrientationIsApplied()
    {
        // Stored 16x8, left half red, right half blue, tagged "rotate 90° clockwise to show" (orientation 6):
        // shown 8x16, red on top, blue below.
        using var bitmap = new SKBitmap(new SKImageInfo(16, 8, SKColorType.Rgba8888, SKAlphaType.Opaque));
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 16; x++)
                bitmap.SetPixel(x, y, x < 8 ? new SKColor(255, 0, 0) : new SKColor(0, 0, 255));
        using var jpeg = bitmap.Encode(SKEncodedImageFormat.Jpeg, 100);
        byte[] plain = jpeg.ToArray();
        byte[] app1 =
        [
            0xFF, 0xE1, 0x00, 34,                                   // APP1, length 34 (itself + 32 bytes)
            (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'M', (byte)'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, // big-endian TIFF header, first IFD at 8
            0x00, 0x01,                                             // one entry
            0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, // Orientation (SHORT) = 6
            0x00, 0x00, 0x00, 0x00,                                 // no next IFD
        ];
        string path = Path.Combine(_dir, "rotated.jpg");
        File.WriteAllBytes(path, [.. plain[..2], .. app1, .. plain[2..]]);

        var image = RgbaImage.Load(path);
        Assert.Equal((8, 16), (image.Width, image.Height));
        var top = image.GetPixel(4, 3);
        var bottom = image.GetPixel(4, 12);
        Assert.True(top.Red > 200 && top.Blue < 60, $"top is {top}");
        Assert.True(bottom.Blue > 200 && bottom.Red < 60, $"bottom is {bottom}");
    }

    [Fact]
    public void BitmapRoundTripKeepsPixels()
    {
        var image = new RgbaImage(5, 3);
        new Random(1).NextBytes(image.Pixels);
        for (int i = 3; i < image.Pixels.Length; i += 4) image.Pixels[i] = 255;
        using var bitmap = image.ToBitmap();
        Assert.Equal(image.Pixels[0], bitmap.GetPixel(0, 0).Red);
        Assert.Equal(image.Pixels, RgbaImage.FromBitmap(bitmap).Pixels);

        // From another color type: BGRA premultiplied, opaque pixels convert exactly.
        using var bgra = new SKBitmap(new SKImageInfo(2, 1, SKColorType.Bgra8888, SKAlphaType.Premul));
        bgra.SetPixel(0, 0, new SKColor(1, 2, 3, 255));
        bgra.SetPixel(1, 0, new SKColor(250, 128, 7, 255));
        Assert.Equal(new byte[] { 1, 2, 3, 255, 250, 128, 7, 255 }, RgbaImage.FromBitmap(bgra).Pixels);
    }

    [Fact]
    public void PixelBufferMustMatchTheSize()
    {
        Assert.Throws<InvalidArgumentException>(() => new RgbaImage(2, 2, new byte[15]));
        Assert.Throws<InvalidArgumentException>(() => new RgbaImage(0, 2));
        Assert.Throws<InvalidArgumentException>(() => new RgbaImage(2, 2).Resize(0, 5));
    }

    private static void AssertOneLineNaming(ImageException e, string path, string? mention = null)
    {
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Equal(path, e.File);
        Assert.DoesNotContain('\n', e.Message);
        if (mention is not null) Assert.Contains(mention, e.Message);
    }

    /// <summary>Writes RGBA pixels as a PNG with SkiaSharp's own encoder (not the code under test).</summary>
    private string WritePng(string name, int width, int height, byte[] rgba)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = (y * width + x) * 4;
                bitmap.SetPixel(x, y, new SKColor(rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]));
            }
        string path = Path.Combine(_dir, name);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }
}
