using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Pipelines;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Bench;

/// <summary>
/// The shipped default model against its held-out captions (combinations training never saw), fixed seeds, each picture
/// read by <see cref="ShapeClassifier"/>. Thresholds sit a few points under the figures measured when the model was
/// trained (docs/benchmarks.md: 100 %, 97.2 %, 46.5 % over these 144 pictures), so a regression in the pipeline, the
/// schedulers or the model fails here. The shape target (≥ 80 %) is not met yet: the VAE alone keeps only
/// 59.7 % of the held-out shapes (<see cref="DefaultVaeKeepsTheShapes"/>).
/// </summary>
public sealed class TinyShapesEvaluationTests(ITestOutputHelper output)
{
    private static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    [Fact]
    public void DefaultModelDrawsWhatHeldOutCaptionsAsk()
    {
        var set = HeldOutSet.Load(Path.Combine(Model, "evaluation", "heldout.json"));
        Assert.True(set.Captions.Count >= 60, $"{set.Captions.Count} held-out captions; the issue asks for at least 60");
        using var pipeline = StableDiffusionPipeline.Load(Model);
        var score = ShapesEvaluation.Run(pipeline, set, [0, 1], steps: 20, guidance: 7.5, scheduler: "euler");
        output.WriteLine(score.ToString());
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Background >= 0.95, score.ToString());
        Assert.True(score.Color >= 0.93, score.ToString());
        Assert.True(score.Shape >= 0.42, score.ToString());
    }

    [Fact]
    public void DefaultVaeKeepsTheShapes()
    {
        // The held-out pictures drawn exactly and passed through vae_encoder -> vae_decoder: the ceiling of the shape
        // metric for any UNet on this VAE (measured 59.7 %; the previous VAE 41.7 %).
        var set = HeldOutSet.Load(Path.Combine(Model, "evaluation", "heldout.json"));
        using var encoder = new OnnxVaeEncoder(Path.Combine(Model, "vae_encoder", "model.onnx"));
        using var decoder = new OnnxVaeDecoder(Path.Combine(Model, "vae_decoder", "model.onnx"));
        var score = ShapesEvaluation.Drawn(set, encoder, decoder);
        output.WriteLine(score.ToString());
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Background >= 0.95 && score.Color >= 0.95, score.ToString());
        Assert.True(score.Shape >= 0.55, score.ToString());
    }
}
