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
        string scheduler = "euler", string? saveDir = null, Action<RgbaImage>? onImage = null) =>
        Run((caption, seed) =>
        {
            var result = pipeline.Generate(new GenerationRequest
            {
                Prompt = caption, Steps = steps, Guidance = guidance, Scheduler = scheduler, Seed = seed,
                Width = set.ImageSize, Height = set.ImageSize,
            });
            return ImageTensor.ToImage(result.Images[0], 1, 3, result.Height, result.Width, 0);
        }, set, seeds, saveDir, onImage);

    /// <summary>The same evaluation over any pipeline: <paramref name="draw"/> makes the picture of a caption with a seed.</summary>
    public static ShapesScore Run(Func<string, ulong, RgbaImage> draw, HeldOutSet set, IReadOnlyList<ulong> seeds, string? saveDir = null, Action<RgbaImage>? onImage = null)
    {
        var score = new Scorer(set);
        foreach (var caption in set.Captions)
            foreach (ulong seed in seeds)
            {
                var image = draw(caption.Caption, seed);
                if (saveDir is not null) PngWriter.Write(Path.Combine(saveDir, $"{score.Count:000}.png"), image);
                onImage?.Invoke(image);
                score.Add(caption, image, $"seed {seed}");
            }
        return score.Result();
    }

    /// <summary>
    /// The pictures the held-out captions describe, drawn exactly (<see cref="ShapeDrawing"/>), each read as drawn
    /// (<paramref name="encoder"/> null: a check of the drawing and the classifier, expected 100 %) or after a round trip
    /// through the VAE: the most a model with this VAE can score, whatever its UNet does.
    /// </summary>
    public static ShapesScore Drawn(HeldOutSet set, IImageEncoder? encoder = null, IImageDecoder? decoder = null, string? saveDir = null)
    {
        if ((encoder is null) != (decoder is null)) throw new ArgumentException("pass both the VAE encoder and decoder, or neither");
        var score = new Scorer(set);
        foreach (var caption in set.Captions)
        {
            var image = ShapeDrawing.Draw(set, caption);
            if (encoder is not null)
            {
                var latents = encoder.Encode(ImageTensor.ToTensor(image), image.Height, image.Width, out int channels);
                var pixels = decoder!.Decode(latents, channels, image.Height / 8, image.Width / 8);
                image = ImageTensor.ToImage(pixels, 1, 3, image.Height, image.Width, 0);
            }
            if (saveDir is not null) PngWriter.Write(Path.Combine(saveDir, $"drawn-{score.Count:000}.png"), image);
            score.Add(caption, image, encoder is null ? "drawn" : "through the VAE");
        }
        return score.Result();
    }

    private sealed class Scorer(HeldOutSet set)
    {
        private readonly ShapeClassifier _classifier = new(set.Palette);
        private readonly List<string> _misses = [];
        private int _bg, _fg, _shape, _pos, _posN;

        public int Count { get; private set; }

        public void Add(HeldOutCaption caption, RgbaImage image, string label)
        {
            var reading = _classifier.Read(image.Pixels, image.Width, image.Height);
            Count++;
            bool okBg = reading.Background == caption.Background, okFg = reading.Color == caption.Color, okShape = reading.Shape == caption.Shape;
            _bg += okBg ? 1 : 0; _fg += okFg ? 1 : 0; _shape += okShape ? 1 : 0;
            if (caption.Position is { Length: > 0 } wanted && caption.Count == 1)
            {
                _posN++;
                if (reading.Position == wanted) _pos++;
            }
            if (!(okBg && okFg && okShape))
                _misses.Add($"\"{caption.Caption}\" {label}: read {reading.Color ?? "-"} {reading.Shape ?? "-"} (fill {reading.FillRatio:0.00}) on {reading.Background}");
        }

        public ShapesScore Result() => new(Count, _bg / (double)Count, _fg / (double)Count, _shape / (double)Count,
            _posN == 0 ? double.NaN : _pos / (double)_posN, _posN, _misses);
    }
}
