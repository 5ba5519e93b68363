using System.Text.Json;
using System.Text.Json.Serialization;
using EdgeDiffusion.ControlNets;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Bench.Shapes;

/// <summary>One held-out mask: the caption to draw, its colours, and the mask PNG (relative to the set's file).</summary>
public sealed record HeldOutMask(
    [property: JsonPropertyName("caption")] string Caption,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("color")] string Color,
    [property: JsonPropertyName("background")] string Background,
    [property: JsonPropertyName("mask")] string Mask);

/// <summary>models/tiny-shapes-controlnet/evaluation/heldout-masks.json (training/tiny-shapes-controlnet/make_heldout.py).</summary>
public sealed record HeldOutMaskSet(IReadOnlyDictionary<string, int[]> Palette, int ImageSize, IReadOnlyList<HeldOutMask> Masks, string Folder)
{
    public static HeldOutMaskSet Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidArgumentException("--heldout", $"{path} not found; it ships in models/tiny-shapes-controlnet/evaluation/heldout-masks.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var palette = root.GetProperty("palette").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(v => v.GetInt32()).ToArray());
        var masks = root.GetProperty("masks").Deserialize<List<HeldOutMask>>() ?? [];
        return new HeldOutMaskSet(palette, root.GetProperty("image_size").GetInt32(), masks, Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    public string MaskPath(HeldOutMask mask) => Path.Combine(Folder, mask.Mask);
}

/// <summary>
/// How well pictures follow their masks: IoU of the drawn shape (the classifier's foreground, pixels ≈ 60 levels from the
/// border's median) with the mask's white pixels, and the colours read as <see cref="ShapeClassifier"/> reads them.
/// </summary>
public sealed record MaskScore(int Images, double MedianIoU, double MinIoU, double Background, double Color, IReadOnlyList<double> IoUs, IReadOnlyList<string> Misses)
{
    /// <summary>Both colours right, over all pictures (background and foreground readings pooled).</summary>
    public double Colours => (Background + Color) / 2;

    public override string ToString() => FormattableString.Invariant(
        $"{Images} images: median IoU {MedianIoU:0.000} (min {MinIoU:0.000}), colours {Colours:P1} (background {Background:P1}, foreground {Color:P1})");
}

public static class ControlNetEvaluation
{
    /// <summary>Generates each held-out mask's caption with the mask as the (single) control image, for each seed, and scores it.</summary>
    public static MaskScore Run(StableDiffusionPipeline pipeline, HeldOutMaskSet set, IReadOnlyList<ulong> seeds, int steps = 20, double guidance = 3,
        string scheduler = "euler", double scale = 1.0, Action<RgbaImage>? onImage = null, float[]? initImage = null, double strength = 0.75)
    {
        var classifier = new ShapeClassifier(set.Palette);
        var ious = new List<double>();
        var misses = new List<string>();
        int background = 0, color = 0;
        foreach (var mask in set.Masks)
        {
            var control = ControlImage.Load(set.MaskPath(mask), set.ImageSize, set.ImageSize);
            foreach (ulong seed in seeds)
            {
                var result = pipeline.Generate(new GenerationRequest
                {
                    Prompt = mask.Caption, Steps = steps, Guidance = guidance, Scheduler = scheduler, Seed = seed,
                    Width = set.ImageSize, Height = set.ImageSize, Controls = [new ControlImage(control, scale)],
                    InitImage = initImage, Strength = strength,
                });
                var image = result.Image();
                onImage?.Invoke(image);
                var reading = classifier.Read(image.Pixels, image.Width, image.Height);
                double iou = IoU(classifier.Foreground(image.Pixels, image.Width, image.Height), control);
                ious.Add(iou);
                background += reading.Background == mask.Background ? 1 : 0;
                color += reading.Color == mask.Color ? 1 : 0;
                if (reading.Background != mask.Background || reading.Color != mask.Color || iou < 0.5)
                    misses.Add(FormattableString.Invariant($"{mask.Mask} \"{mask.Caption}\" seed {seed}: IoU {iou:0.00}, read {reading.Color ?? "-"} on {reading.Background}"));
            }
        }
        var sorted = ious.Order().ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        return new MaskScore(ious.Count, median, sorted[0], background / (double)ious.Count, color / (double)ious.Count, ious, misses);
    }

    /// <summary>Intersection over union of the foreground with the control image's white part (red channel above ½).</summary>
    public static double IoU(bool[] foreground, float[] control)
    {
        int inter = 0, union = 0;
        for (int i = 0; i < foreground.Length; i++)
        {
            bool inMask = control[i] > 0.5f;
            if (foreground[i] && inMask) inter++;
            if (foreground[i] || inMask) union++;
        }
        return union == 0 ? 1 : inter / (double)union;
    }
}
