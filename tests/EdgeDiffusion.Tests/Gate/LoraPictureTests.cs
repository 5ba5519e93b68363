using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Lora;
using EdgeDiffusion.Pipelines;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// The picture gate for LoRA: the shipped kohya LoRA models/loras/tiny-shapes-pink.safetensors (training/tiny-shapes-pink-lora)
/// teaches the default model the colour word pink, sRGB (255, 105, 180), which the base model never saw: with it merged,
/// captions with pink draw pink (as the shape or the background), the base held-out captions keep their colours, and the
/// base model without it does not draw pink.
/// </summary>
[Collection(PictureGateCollection.Name)]
public sealed class LoraPictureTests(PictureGate gate, ITestOutputHelper output)
{
    private static string LoraFile => Path.Combine(TestData.RepoRoot, "models", "loras", "tiny-shapes-pink.safetensors");

    private static readonly string[] Colours = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"];

    /// <summary>Pink as the shape on each other background, and each shape colour on pink (16 captions, 3 shapes in turn).</summary>
    private static HeldOutSet PinkSet(HeldOutSet base_)
    {
        var palette = new Dictionary<string, int[]>(base_.Palette) { ["pink"] = [255, 105, 180] };
        string[] shapes = ["circle", "square", "triangle"];
        var captions = new List<HeldOutCaption>();
        for (int i = 0; i < Colours.Length; i++)
        {
            string shape = shapes[i % 3];
            captions.Add(new($"a pink {shape} on a {Colours[i]} background", shape, 1, "pink", Colours[i], null, null));
            captions.Add(new($"a {Colours[i]} {shapes[(i + 1) % 3]} on a pink background", shapes[(i + 1) % 3], 1, Colours[i], "pink", null, null));
        }
        return base_ with { Palette = palette, Captions = captions };
    }

    /// <summary>Pink as drawn: the share of pictures whose pink part (the shape or the background, as captioned) reads pink.</summary>
    private static double PinkShare(StableDiffusionPipeline pipeline, HeldOutSet pink, double guidance, out string detail)
    {
        var images = new List<EdgeDiffusion.Imaging.RgbaImage>();
        ShapesEvaluation.Run(pipeline, pink, [0, 1], 20, guidance, "euler", onImage: images.Add);
        var classifier = new ShapeClassifier(pink.Palette);
        int right = 0, shapeRight = 0, backgroundRight = 0, i = 0;
        foreach (var caption in pink.Captions)
            foreach (var _ in new[] { 0, 1 })
            {
                var image = images[i++];
                var reading = classifier.Read(image.Pixels, image.Width, image.Height);
                bool ok = caption.Color == "pink" ? reading.Color == "pink" : reading.Background == "pink";
                if (ok) right++;
                if (ok && caption.Color == "pink") shapeRight++;
                if (ok && caption.Background == "pink") backgroundRight++;
            }
        detail = $"pink drawn in {right} of {images.Count} (as the shape {shapeRight}, as the background {backgroundRight})";
        return right / (double)images.Count;
    }

    [Fact]
    public void PinkLoraDrawsPinkAndKeepsTheOtherColours()
    {
        var pink = PinkSet(gate.Subset);
        using var adapted = StableDiffusionPipeline.Load(PictureGate.Model, loras: new LoraOptions([LoraAdapter.Load(LoraFile)]));
        Assert.Equal(adapted.LoraReports.Sum(r => r.AppliedKeys.Count), LoraAdapter.Load(LoraFile).Layers.Count);
        double with = PinkShare(adapted, pink, gate.Guidance, out string withDetail);
        double without = PinkShare(gate.Float32, pink, gate.Guidance, out string withoutDetail);
        output.WriteLine($"with the LoRA: {withDetail}; without: {withoutDetail}");
        Assert.True(with >= LoraFloors.Pink, $"with the LoRA: {withDetail}");
        Assert.True(without <= 0.1, $"the base model already draws pink: {withoutDetail}");

        var kept = ShapesEvaluation.Run(adapted, gate.Subset, gate.Seeds, 20, gate.Guidance, "euler");
        output.WriteLine($"base held-out captions with the LoRA: {kept}");
        Assert.True(kept.Background >= 0.9 && kept.Color >= 0.9, $"with the LoRA the other colours: {kept}");
    }
}

/// <summary>Set a few points under the shipped LoRA's measured pink share (training/tiny-shapes-pink-lora/README.md).</summary>
internal static class LoraFloors
{
    public const double Pink = 0.7; // measured 25 of 32 (0.78) with the run-4 LoRA (decoder-inverted latents)
}
