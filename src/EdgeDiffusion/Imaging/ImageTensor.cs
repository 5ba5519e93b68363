using SkiaSharp;

namespace EdgeDiffusion.Imaging;

/// <summary>
/// Conversions between float NCHW tensors in [-1, 1] (what the VAE decoder gives and the VAE encoder takes) and 8-bit
/// RGB images. Arithmetic is float32 in the same order as diffusers' VaeImageProcessor, so pixels match its output.
/// </summary>
public static class ImageTensor
{
    /// <summary>
    /// One decoder value to a pixel byte: clamp(x/2 + 0.5, 0, 1)·255, rounded half to even. This is diffusers'
    /// <c>(x / 2 + 0.5).clamp(0, 1)</c> then <c>(images * 255).round()</c>; numpy and torch round halves to even, so
    /// 0 → 127.5 → 128, and -1 → 0, 1 → 255. Out-of-range values clamp; NaN gives 0 (numpy's uint8 cast of NaN is undefined).
    /// </summary>
    public static byte ToPixel(float x)
    {
        float v = x / 2f + 0.5f;
        if (!(v > 0f)) return 0; // also NaN
        if (v >= 1f) return 255;
        return (byte)MathF.Round(v * 255f, MidpointRounding.ToEven);
    }

    /// <summary>One pixel byte to an encoder value: p/255·2 − 1 in float32 (diffusers: <c>x / 255.0</c>, then <c>2.0 * x - 1.0</c>).</summary>
    public static float ToValue(byte pixel) => 2f * (pixel / 255f) - 1f;

    /// <summary>
    /// Splits a decoder output of shape [batch, channels, height, width] (channels must be 3: R, G, B) into one opaque
    /// image per batch entry, each pixel by <see cref="ToPixel"/>.
    /// </summary>
    public static RgbaImage[] ToImages(ReadOnlySpan<float> nchw, int batch, int channels, int height, int width)
    {
        CheckShape(nchw.Length, batch, channels, height, width);
        var images = new RgbaImage[batch];
        for (int n = 0; n < batch; n++)
            images[n] = ToImageUnchecked(nchw, n, height, width);
        return images;
    }

    /// <summary><see cref="ToImages(ReadOnlySpan{float}, int, int, int, int)"/> with the shape as ONNX Runtime reports it (4 dims).</summary>
    public static RgbaImage[] ToImages(ReadOnlySpan<float> nchw, ReadOnlySpan<long> shape)
    {
        if (shape.Length != 4)
            throw new InvalidArgumentException(nameof(shape), $"has {shape.Length} dims; a decoder output is [batch, 3, height, width]");
        foreach (long dim in shape)
            if (dim <= 0 || dim > int.MaxValue)
                throw new InvalidArgumentException(nameof(shape), $"[{string.Join(", ", shape.ToArray())}] has a dim that is not a positive 32-bit size; pass the decoder output's shape");
        return ToImages(nchw, (int)shape[0], (int)shape[1], (int)shape[2], (int)shape[3]);
    }

    /// <summary>The image of batch entry <paramref name="index"/> only.</summary>
    public static RgbaImage ToImage(ReadOnlySpan<float> nchw, int batch, int channels, int height, int width, int index)
    {
        CheckShape(nchw.Length, batch, channels, height, width);
        if ((uint)index >= (uint)batch)
            throw new InvalidArgumentException(nameof(index), $"is {index}; the batch holds images 0 to {batch - 1}");
        return ToImageUnchecked(nchw, index, height, width);
    }

    /// <summary>
    /// Writes an image as [1, 3, height, width] values into <paramref name="destination"/> (3·height·width floats), each by
    /// <see cref="ToValue"/>. Alpha is ignored here; transparent images should be flattened first (<see cref="LoadInitImage"/> does).
    /// </summary>
    public static void ToTensor(RgbaImage image, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        int plane = image.Width * image.Height;
        if (destination.Length != 3 * plane)
            throw new InvalidArgumentException(nameof(destination), $"holds {destination.Length} floats but a {image.Width}x{image.Height} image needs 3·{plane} = {3 * plane}");
        var pixels = image.Pixels;
        for (int i = 0; i < plane; i++)
        {
            destination[i] = ToValue(pixels[4 * i]);
            destination[plane + i] = ToValue(pixels[4 * i + 1]);
            destination[2 * plane + i] = ToValue(pixels[4 * i + 2]);
        }
    }

    /// <summary>An image as a new [1, 3, height, width] tensor (see <see cref="ToTensor(RgbaImage, Span{float})"/>).</summary>
    public static float[] ToTensor(RgbaImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var values = new float[3L * image.Width * image.Height];
        ToTensor(image, values);
        return values;
    }

    /// <summary>Images of one size as a new [N, 3, height, width] tensor.</summary>
    public static float[] ToTensor(IReadOnlyList<RgbaImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new InvalidArgumentException(nameof(images), "is empty; pass at least one image");
        int width = images[0].Width, height = images[0].Height;
        long plane3 = 3L * width * height;
        if (plane3 * images.Count > Array.MaxLength)
            throw new InvalidArgumentException(nameof(images), $"{images.Count} images of {width}x{height} are over the array size limit; pass fewer");
        var values = new float[plane3 * images.Count];
        for (int n = 0; n < images.Count; n++)
        {
            if (images[n].Width != width || images[n].Height != height)
                throw new InvalidArgumentException(nameof(images), $"image {n} is {images[n].Width}x{images[n].Height} but image 0 is {width}x{height}; resize them to one size");
            ToTensor(images[n], values.AsSpan((int)(n * plane3), (int)plane3));
        }
        return values;
    }

    /// <summary>
    /// An img2img init image as a [1, 3, <paramref name="height"/>, <paramref name="width"/>] tensor in [-1, 1]: the file is
    /// decoded (and turned upright by its EXIF orientation), composited on white when it has transparency (so transparent
    /// areas read as white, not as whatever color hides under alpha 0), resized with <see cref="RgbaImage.Resize"/> when its
    /// size differs (stretched, not cropped), and converted by <see cref="ToValue"/>. The file is not modified.
    /// Missing, unreadable or non-image files give an <see cref="ImageException"/> naming the file.
    /// </summary>
    public static float[] LoadInitImage(string path, int width, int height)
    {
        RgbaImage.ByteCount(width, height);
        var image = RgbaImage.Load(path);
        if (!image.IsOpaque) image = image.FlattenOnto(SKColors.White);
        if (image.Width != width || image.Height != height) image = image.Resize(width, height);
        return ToTensor(image);
    }

    private static RgbaImage ToImageUnchecked(ReadOnlySpan<float> nchw, int n, int height, int width)
    {
        int plane = height * width;
        var image = new RgbaImage(width, height);
        var pixels = image.Pixels;
        var r = nchw.Slice(3 * plane * n, plane);
        var g = nchw.Slice(3 * plane * n + plane, plane);
        var b = nchw.Slice(3 * plane * n + 2 * plane, plane);
        for (int i = 0; i < plane; i++)
        {
            pixels[4 * i] = ToPixel(r[i]);
            pixels[4 * i + 1] = ToPixel(g[i]);
            pixels[4 * i + 2] = ToPixel(b[i]);
            pixels[4 * i + 3] = 255;
        }
        return image;
    }

    private static void CheckShape(int length, int batch, int channels, int height, int width)
    {
        if (batch <= 0) throw new InvalidArgumentException(nameof(batch), $"is {batch}; the batch size must be positive");
        if (channels != 3) throw new InvalidArgumentException(nameof(channels), $"is {channels}; a decoder output must have 3 channels (R, G, B) in NCHW layout");
        RgbaImage.ByteCount(width, height);
        long need = (long)batch * channels * height * width;
        if (length != need)
            throw new InvalidArgumentException("nchw", $"holds {length} values but shape [{batch}, {channels}, {height}, {width}] needs {need}; pass the tensor's own shape");
    }
}
