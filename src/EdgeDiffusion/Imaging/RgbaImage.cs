using SkiaSharp;

namespace EdgeDiffusion.Imaging;

/// <summary>
/// An 8-bit RGBA image in memory: <see cref="Pixels"/> holds 4 bytes per pixel (R, G, B, A), rows top to bottom,
/// no padding, alpha not premultiplied. No color profile is attached or applied: the values are the ones the file
/// or the model holds (as diffusers and PIL treat them).
/// </summary>
public sealed class RgbaImage
{
    /// <summary>The most pixels <see cref="Decode"/> accepts (2^28, 1 GiB as RGBA), so a corrupt header cannot make it allocate gigabytes.</summary>
    public const long MaxDecodedPixels = 1L << 28;

    /// <summary>A transparent black image.</summary>
    public RgbaImage(int width, int height) : this(width, height, new byte[ByteCount(width, height)]) { }

    /// <summary>Wraps <paramref name="pixels"/> (RGBA, row-major, <paramref name="width"/>·4 bytes a row) without copying.</summary>
    public RgbaImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        long need = ByteCount(width, height);
        if (pixels.Length != need)
            throw new InvalidArgumentException(nameof(pixels), $"holds {pixels.Length} bytes but a {width}x{height} RGBA image needs {need}; pass width·height·4 bytes");
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>R, G, B, A bytes of each pixel, rows top to bottom.</summary>
    public byte[] Pixels { get; }

    /// <summary>Bytes per row (Width·4).</summary>
    public int RowBytes => Width * 4;

    /// <summary>Whether every pixel has alpha 255.</summary>
    public bool IsOpaque
    {
        get
        {
            for (int i = 3; i < Pixels.Length; i += 4)
                if (Pixels[i] != 255) return false;
            return true;
        }
    }

    public SKColor GetPixel(int x, int y)
    {
        int i = Offset(x, y);
        return new SKColor(Pixels[i], Pixels[i + 1], Pixels[i + 2], Pixels[i + 3]);
    }

    public void SetPixel(int x, int y, SKColor color)
    {
        int i = Offset(x, y);
        Pixels[i] = color.Red;
        Pixels[i + 1] = color.Green;
        Pixels[i + 2] = color.Blue;
        Pixels[i + 3] = color.Alpha;
    }

    public RgbaImage Clone() => new(Width, Height, (byte[])Pixels.Clone());

    /// <summary>
    /// Composites the image over an opaque <paramref name="background"/>: each channel becomes
    /// round((c·a + bg·(255 − a)) / 255) and alpha 255. Exact integer arithmetic (no half-way cases exist).
    /// </summary>
    public RgbaImage FlattenOnto(SKColor background)
    {
        var result = new byte[Pixels.Length];
        ReadOnlySpan<byte> bg = [background.Red, background.Green, background.Blue];
        for (int i = 0; i < Pixels.Length; i += 4)
        {
            int a = Pixels[i + 3];
            for (int c = 0; c < 3; c++)
                result[i + c] = (byte)((Pixels[i + c] * a + bg[c] * (255 - a) + 127) / 255);
            result[i + 3] = 255;
        }
        return new RgbaImage(Width, Height, result);
    }

    /// <summary>
    /// A copy resampled to <paramref name="width"/>×<paramref name="height"/> (the aspect ratio is not kept: the image
    /// is stretched, as diffusers' default resize does). Shrinking uses mipmapped linear filtering (no aliasing), enlarging
    /// Mitchell cubic; diffusers uses PIL's Lanczos, so resized pixels are close to, not identical with, diffusers'.
    /// Equal sizes give a plain copy. Transparent images are filtered per channel (alpha not premultiplied).
    /// </summary>
    public RgbaImage Resize(int width, int height)
    {
        long need = ByteCount(width, height);
        if (width == Width && height == Height) return Clone();
        var sampling = width <= Width && height <= Height
            ? new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear)
            : new SKSamplingOptions(SKCubicResampler.Mitchell);
        var alpha = IsOpaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul;
        var result = new byte[need];
        unsafe
        {
            fixed (byte* src = Pixels)
            fixed (byte* dst = result)
            {
                using var from = new SKPixmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, alpha), (IntPtr)src, RowBytes);
                using var to = new SKPixmap(new SKImageInfo(width, height, SKColorType.Rgba8888, alpha), (IntPtr)dst, width * 4);
                if (!from.ScalePixels(to, sampling))
                    throw new InvalidOperationException($"SkiaSharp could not resize a {Width}x{Height} image to {width}x{height}");
            }
        }
        var image = new RgbaImage(width, height, result);
        if (alpha == SKAlphaType.Opaque)
            for (int i = 3; i < result.Length; i += 4) result[i] = 255;
        return image;
    }

    /// <summary>A new SkiaSharp bitmap holding a copy of the pixels (RGBA 8888, unpremultiplied, or opaque when every alpha is 255). The caller disposes it.</summary>
    public SKBitmap ToBitmap()
    {
        var bitmap = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, IsOpaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul));
        try
        {
            var destination = bitmap.GetPixelSpan();
            int stride = bitmap.RowBytes;
            for (int y = 0; y < Height; y++)
                Pixels.AsSpan(y * RowBytes, RowBytes).CopyTo(destination.Slice(y * stride, RowBytes));
            return bitmap;
        }
        catch { bitmap.Dispose(); throw; }
    }

    /// <summary>Copies a SkiaSharp bitmap of any color type, converting to unpremultiplied RGBA 8888 (no color space conversion).</summary>
    public static RgbaImage FromBitmap(SKBitmap bitmap)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        if (bitmap.Width <= 0 || bitmap.Height <= 0)
            throw new InvalidArgumentException(nameof(bitmap), $"is {bitmap.Width}x{bitmap.Height}; an image needs at least one pixel");
        var image = new RgbaImage(bitmap.Width, bitmap.Height);
        using var source = bitmap.PeekPixels()
            ?? throw new InvalidArgumentException(nameof(bitmap), "has no pixels in memory; decode or allocate it first");
        var info = new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul, source.ColorSpace);
        unsafe
        {
            fixed (byte* dst = image.Pixels)
                if (!source.ReadPixels(info, (IntPtr)dst, image.RowBytes))
                    throw new InvalidArgumentException(nameof(bitmap), $"has color type {bitmap.ColorType}, which SkiaSharp cannot convert to RGBA 8888");
        }
        return image;
    }

    /// <summary>
    /// Reads and decodes an image file (PNG, JPEG, WebP, GIF (first frame), BMP, ICO, WBMP), turned upright by its EXIF
    /// orientation. Alpha is kept as stored. Any failure is an <see cref="ImageException"/> naming <paramref name="path"/>.
    /// </summary>
    public static RgbaImage Load(string path) => Decode(ImageFiles.ReadAllBytes(path, "an image file (PNG, JPEG, WebP, BMP or GIF)"), path);

    /// <summary>Decodes an encoded image held in memory; <paramref name="source"/> names it in errors.</summary>
    public static RgbaImage Decode(byte[] encoded, string source = "<image in memory>")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        if (encoded.Length == 0)
            throw new ImageException(source, "is empty (0 bytes); pass an image file (PNG, JPEG, WebP, BMP or GIF)");
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data)
            ?? throw new ImageException(source, "is not an image SkiaSharp can decode (PNG, JPEG, WebP, GIF, BMP, ICO or WBMP expected); convert it to PNG");
        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0)
            throw new ImageException(source, $"declares a {width}x{height} image; the file is corrupt, re-save it as PNG");
        if ((long)width * height > MaxDecodedPixels)
            throw new ImageException(source, $"is {width}x{height}, over the {MaxDecodedPixels >> 20}-megapixel limit for decoding; downscale it first");
        var image = new RgbaImage(width, height);
        SKCodecResult result;
        unsafe
        {
            fixed (byte* dst = image.Pixels)
                result = codec.GetPixels(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul), (IntPtr)dst);
        }
        if (result != SKCodecResult.Success)
        {
            string why = result switch
            {
                SKCodecResult.IncompleteInput => "is truncated (the image data ends early); re-download or re-save it",
                SKCodecResult.ErrorInInput => "is corrupt (its image data cannot be decoded); re-save it as PNG",
                _ => $"cannot be decoded ({result}); convert it to PNG",
            };
            throw new ImageException(source, why);
        }
        return image.Orient(codec.EncodedOrigin);
    }

    /// <summary>The image as it is meant to be shown, given where its stored first row and column belong (EXIF orientation).</summary>
    internal RgbaImage Orient(SKEncodedOrigin origin)
    {
        if (origin == SKEncodedOrigin.TopLeft) return this;
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int w = Width, h = Height;
        var result = swap ? new RgbaImage(h, w) : new RgbaImage(w, h);
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                (int dx, int dy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),             // mirrored left-right
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),  // rotated 180°
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),           // mirrored top-bottom
                    SKEncodedOrigin.LeftTop => (y, x),                      // transposed
                    SKEncodedOrigin.RightTop => (h - 1 - y, x),             // needs 90° clockwise
                    SKEncodedOrigin.RightBottom => (h - 1 - y, w - 1 - x),  // transversed
                    SKEncodedOrigin.LeftBottom => (y, w - 1 - x),           // needs 90° counter-clockwise
                    _ => (x, y),
                };
                Pixels.AsSpan(Offset(x, y), 4).CopyTo(result.Pixels.AsSpan(result.Offset(dx, dy), 4));
            }
        }
        return result;
    }

    private int Offset(int x, int y)
    {
        if ((uint)x >= (uint)Width) throw new ArgumentOutOfRangeException(nameof(x), x, $"must be in [0, {Width})");
        if ((uint)y >= (uint)Height) throw new ArgumentOutOfRangeException(nameof(y), y, $"must be in [0, {Height})");
        return (y * Width + x) * 4;
    }

    internal static int ByteCount(int width, int height)
    {
        if (width <= 0) throw new InvalidArgumentException(nameof(width), $"is {width}; an image width must be positive");
        if (height <= 0) throw new InvalidArgumentException(nameof(height), $"is {height}; an image height must be positive");
        long bytes = (long)width * height * 4;
        if (bytes > Array.MaxLength)
            throw new InvalidArgumentException(nameof(width), $"{width}x{height} RGBA needs {bytes} bytes, over the {Array.MaxLength}-byte array limit; use a smaller size");
        return (int)bytes;
    }
}
