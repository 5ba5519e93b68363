using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Bench.Shapes;

/// <summary>Accuracy of each reading over the held-out captions (position only where a caption names one).</summary>
public sealed record ShapesScore(int Images, double Background, double Color, double Shape, double Position, int PositionImages, IReadOnlyList<string> Misses)
{
    public override string ToString() => FormattableString.Invariant(
        $"{Images} images: background colour {Background:P1}, foreground colour {Color:P1}, shape {Shape:P1}, position {Position:P1} (of {PositionImages})");
}

/// <summary>Generates every held-out caption with fixed seeds and scores what the pictures show against what the captions ask.</summary>
public static class ShapesEvaluation
{
    public static ShapesScore Run(StableDiffusionPipeline pipeline, HeldOutSet set, IReadOnlyList<ulong> seeds, int steps = 20, double guidance = 7.5,
        string scheduler = "euler", string? saveDir = null, Action<RgbaImage>? onImage = null)
    {
        var classifier = new ShapeClassifier(set.Palette);
        int n = 0, bg = 0, fg = 0, shape = 0, pos = 0, posN = 0;
        var misses = new List<string>();
        foreach (var caption in set.Captions)
            foreach (ulong seed in seeds)
            {
                var result = pipeline.Generate(new GenerationRequest
                {
                    Prompt = caption.Caption, Steps = steps, Guidance = guidance, Scheduler = scheduler, Seed = seed,
                    Width = set.ImageSize, Height = set.ImageSize,
                });
                var image = ImageTensor.ToImage(result.Images[0], 1, 3, result.Height, result.Width, 0);
                if (saveDir is not null) PngWriter.Write(Path.Combine(saveDir, $"{n:000}.png"), image);
                onImage?.Invoke(image);
                var reading = classifier.Read(image.Pixels, image.Width, image.Height);
                n++;
                bool okBg = reading.Background == caption.Background, okFg = reading.Color == caption.Color, okShape = reading.Shape == caption.Shape;
                bg += okBg ? 1 : 0; fg += okFg ? 1 : 0; shape += okShape ? 1 : 0;
                if (caption.Position is { Length: > 0 } wanted && caption.Count == 1)
                {
                    posN++;
                    if (reading.Position == wanted) pos++;
                }
                if (!(okBg && okFg && okShape))
                    misses.Add($"\"{caption.Caption}\" seed {seed}: read {reading.Color ?? "-"} {reading.Shape ?? "-"} (fill {reading.FillRatio:0.00}) on {reading.Background}");
            }
        return new ShapesScore(n, bg / (double)n, fg / (double)n, shape / (double)n, posN == 0 ? double.NaN : pos / (double)posN, posN, misses);
    }
}
