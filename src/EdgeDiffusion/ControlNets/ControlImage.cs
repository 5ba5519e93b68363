using EdgeDiffusion.Imaging;
using SkiaSharp;

namespace EdgeDiffusion.ControlNets;

/// <summary>
/// What one ControlNet of a generation is given: its conditioning image as [3, height, width] floats in [0, 1] (RGB, the
/// generation's size: diffusers' control image, not normalised to [-1, 1]), its conditioning scale and the fraction of
/// the denoising steps it acts on (diffusers' control_guidance_start / control_guidance_end).
/// </summary>
public sealed record ControlImage(float[] Pixels, double Scale = 1.0, double GuidanceStart = 0.0, double GuidanceEnd = 1.0)
{
    /// <summary>
    /// A control image from a file, as diffusers prepares one: decoded (upright by its EXIF orientation), transparent areas
    /// read as black (no control: a mask's empty part), resized to <paramref name="width"/>×<paramref name="height"/> when
    /// its size differs (stretched, as diffusers resizes; a mask should have the output's aspect ratio), RGB in [0, 1].
    /// Missing, unreadable or non-image files are an <see cref="ImageException"/> naming the file.
    /// </summary>
    public static float[] Load(string path, int width, int height)
    {
        RgbaImage.ByteCount(width, height);
        var image = RgbaImage.Load(path);
        if (!image.IsOpaque) image = image.FlattenOnto(SKColors.Black);
        if (image.Width != width || image.Height != height) image = image.Resize(width, height);
        int plane = width * height;
        var values = new float[3 * plane];
        var pixels = image.Pixels;
        for (int i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++)
                values[c * plane + i] = pixels[4 * i + c] / 255f;
        return values;
    }

    /// <summary>Checks the fields against the generation's size, naming the CLI option of ControlNet <paramref name="index"/>.</summary>
    public void Validate(int index, int width, int height)
    {
        if (Pixels is null || Pixels.Length != 3L * width * height)
            throw new InvalidArgumentException("--control-image", $"holds {Pixels?.Length ?? 0} values{Which(index)}; expected 3×{height}×{width} (load it with ControlImage.Load at the output size)");
        ValidateSettings(index);
    }

    /// <summary>The scale and guidance range alone (the CLI checks them before reading the image).</summary>
    public void ValidateSettings(int index)
    {
        string which = Which(index);
        if (!double.IsFinite(Scale) || Scale is < 0 or > 10)
            throw new InvalidArgumentException("--control-scale", $"{Scale}{which} is out of range; use 0 to 10 (1 is the scale the ControlNet was trained at)");
        if (!(GuidanceStart >= 0 && GuidanceStart < GuidanceEnd && GuidanceEnd <= 1))
            throw new InvalidArgumentException("--control-start", $"{GuidanceStart}..{GuidanceEnd}{which} is not a range 0 ≤ start < end ≤ 1 of the steps; e.g. --control-start 0 --control-end 1");
    }

    private static string Which(int index) => index == 0 ? "" : $" (ControlNet {index + 1})";

    /// <summary>diffusers' controlnet_keep: whether the ControlNet acts on step <paramref name="index"/> of <paramref name="count"/>.</summary>
    public bool ActsOn(int index, int count) => !((double)index / count < GuidanceStart || (double)(index + 1) / count > GuidanceEnd);
}
