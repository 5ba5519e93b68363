using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// Lean attention on the picture gate: the gate's float32 pictures are made with the default fused attention (ONNX
/// Runtime's MultiHeadAttention); the same captions and seeds through the graph's own unfused attention must give the
/// same pictures, up to float rounding, and the W8A8 model with fused attention is judged in CompressionPictureTests.
/// </summary>
[Collection(PictureGateCollection.Name)]
public sealed class AttentionPictureTests(PictureGate gate, ITestOutputHelper output)
{
    [Fact]
    public void FusedAndUnfusedAttentionDrawTheSamePictures()
    {
        var fused = gate.References();
        var images = new List<RgbaImage>();
        ShapesScore score;
        using (var unfused = StableDiffusionPipeline.Load(PictureGate.Model, SessionSettings.Default with { Attention = AttentionKernel.Unfused }))
            score = ShapesEvaluation.Run(unfused, gate.Subset, gate.Seeds, 20, gate.Guidance, "euler", onImage: images.Add);
        var psnr = PictureGate.Psnrs(fused, images);
        output.WriteLine($"unfused against fused attention: PSNR mean {psnr.Average():F1} dB, min {psnr.Min():F1}; {score}");
        Assert.True(psnr.Min() >= 45, $"unfused attention's pictures differ from fused ones: min PSNR {psnr.Min():F1} dB");
        Assert.True(score.Background >= 0.95 && score.Color >= 0.95, score.ToString());
    }
}
