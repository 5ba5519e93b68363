using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Compression;
using EdgeDiffusion.ControlNets;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// The picture gate for ControlNet: models/tiny-shapes-controlnet (training/tiny-shapes-controlnet) makes the default
/// model draw the caption's shape inside a mask it never saw (corners and off-grid places, held-out colour combinations):
/// IoU of the drawn shape with the mask and the colours, judged by the shapes classifier, with every scheduler, in
/// img2img and with the ControlNet folder compressed to int8. Floors sit under the figures measured in
/// docs/benchmarks.md ("ControlNet"); the base model without the ControlNet scores an IoU near 0 on the same masks.
/// </summary>
[Collection(PictureGateCollection.Name)]
public sealed class ControlNetPictureTests(PictureGate gate, ITestOutputHelper output)
{
    private static string ControlModel => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes-controlnet");

    private static HeldOutMaskSet All => HeldOutMaskSet.Load(Path.Combine(ControlModel, "evaluation", "heldout-masks.json"));

    /// <summary>Every 4th mask (12 of 48): both kinds of place, all three shapes, eight foreground colours.</summary>
    private static HeldOutMaskSet Subset => All with { Masks = All.Masks.Where((_, i) => i % 4 == 0).ToList() };

    private static StableDiffusionPipeline Load(string controlFolder, string? model = null) =>
        StableDiffusionPipeline.Load(model ?? PictureGate.Model, controlNets: new ControlNetOptions([ControlNetFolder.Open(controlFolder)]));

    private MaskScore Score(StableDiffusionPipeline pipeline, HeldOutMaskSet set, string label, string scheduler = "euler", int steps = 20, float[]? init = null, double strength = 0.75)
    {
        var score = ControlNetEvaluation.Run(pipeline, set, [0], steps, gate.Guidance, scheduler, initImage: init, strength: strength);
        output.WriteLine($"{label}: {score}");
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        return score;
    }

    [Fact]
    public void DrawsTheShapeInsideEveryHeldOutMask()
    {
        using var pipeline = Load(ControlModel);
        var score = Score(pipeline, All, "48 held-out masks, euler 20 steps");
        Assert.True(score.MedianIoU >= ControlNetFloors.MedianIoU, score.ToString());
        Assert.True(score.Colours >= ControlNetFloors.Colours, score.ToString());
        // Without the control image the same captions are drawn where the base model puts them: the IoU is the ControlNet's.
        var plain = ControlNetEvaluation.Run(pipeline, Subset, [0], 20, gate.Guidance, "euler", scale: 0);
        output.WriteLine($"control scale 0 (the base model): {plain}");
        Assert.True(plain.MedianIoU <= 0.3, plain.ToString());
    }

    [Theory]
    [MemberData(nameof(SchedulerPictureTests.Cases), MemberType = typeof(SchedulerPictureTests))]
    public void EverySchedulerFollowsTheMasks(string scheduler, int steps)
    {
        using var pipeline = Load(ControlModel);
        var score = Score(pipeline, Subset, $"{scheduler} {steps} steps", scheduler, steps);
        Assert.True(score.MedianIoU >= ControlNetFloors.SchedulerMedianIoU, $"{scheduler} {steps} steps: {score}");
        if (steps >= 20) Assert.True(score.Colours >= ControlNetFloors.Colours, $"{scheduler} {steps} steps: {score}");
        // At 8 steps orange reads red or yellow in one or two of 12 pictures with lcm and euler-a (the base model's
        // nearest colours; backgrounds stay right).
        Assert.True(score.Background >= 0.9 && score.Color >= ControlNetFloors.FewStepsForeground, $"{scheduler} {steps} steps: {score}");
    }

    [Fact]
    public void Img2ImgMovesTheShapeIntoTheMask()
    {
        // The init picture: the caption drawn by the base model where it puts shapes (its own place, not the mask's).
        using var pipeline = Load(ControlModel);
        var init = gate.Float32.Generate(new GenerationRequest { Prompt = "a red circle on a blue background", Guidance = gate.Guidance, Width = 64, Height = 64 }).Images[0];
        var score = Score(pipeline, Subset, "img2img strength 0.8", init: init, strength: 0.8);
        Assert.True(score.MedianIoU >= ControlNetFloors.Img2ImgMedianIoU, score.ToString());
        Assert.True(score.Colours >= ControlNetFloors.Colours, score.ToString());
    }

    [Fact]
    public void AnInt8CompressedControlNetFollowsTheMasks()
    {
        string folder = Path.Combine(gate.WorkDir, "controlnet-int8");
        var encoder = WeightEncoders.Create(new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8 });
        ModelFolderCompressor.Compress(ControlModel, folder, (_, _) => encoder, new FolderCompressionOptions { Overwrite = true });
        using var pipeline = Load(folder);
        var score = Score(pipeline, Subset with { Folder = Path.Combine(ControlModel, "evaluation") }, "controlnet/ and unet/ linear int8");
        Assert.True(score.MedianIoU >= ControlNetFloors.SchedulerMedianIoU, score.ToString());
        Assert.True(score.Colours >= ControlNetFloors.Colours, score.ToString());
    }
}

/// <summary>A few points under the measured figures (docs/benchmarks.md, "ControlNet"); the base model scores an IoU near 0.</summary>
internal static class ControlNetFloors
{
    /// <summary>48 masks, seed 0, euler 20: measured 0.93 (0.933 over seeds 0 and 1).</summary>
    public const double MedianIoU = 0.85;

    /// <summary>12 masks: measured 0.874–0.895 over every scheduler at 8 and 20 steps, img2img 0.8 and int8.</summary>
    public const double SchedulerMedianIoU = 0.8;

    public const double Img2ImgMedianIoU = 0.8;

    /// <summary>Measured 100 % at 20 steps everywhere.</summary>
    public const double Colours = 0.95;

    /// <summary>Measured 83.3 % (lcm) and 91.7 % (euler-a) at 8 steps, 100 % for the others.</summary>
    public const double FewStepsForeground = 0.75;
}
