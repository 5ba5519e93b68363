using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Pipelines;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Bench;

/// <summary>
/// The shipped default model against its held-out captions (combinations training never saw), fixed seeds, each picture
/// read by <see cref="ShapeClassifier"/>. Thresholds sit a few points under the figures measured with the shipped model
/// (the any-colour VAE decoder, training/tiny-shapes/README.md: 100 %, 100 %, 81.9 % over these 144 pictures at the model's
/// guidance 3, 68.8 % shape at 7.5), so a regression in the pipeline, the schedulers or the model fails here. The issue's
/// targets (≥ 90 / 90 / 80 %) are met at the model's guidance; the VAE alone keeps 87.5 % of the held-out shapes
/// (<see cref="DefaultVaeKeepsTheShapes"/>).
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
        // At the model's own guidance (model_index.json, what `edgediff generate` uses): 100 / 100 / 81.9 % measured.
        double guidance = StableDiffusionPipeline.ConfiguredGuidance(Model) ?? GenerationRequest.DefaultGuidance;
        var score = ShapesEvaluation.Run(pipeline, set, [0, 1], steps: 20, guidance: guidance, scheduler: "euler");
        output.WriteLine($"guidance {guidance}: {score}");
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Background >= 0.95, score.ToString());
        Assert.True(score.Color >= 0.95, score.ToString());
        Assert.True(score.Shape >= 0.80, score.ToString());

        // At SD's usual 7.5 the shapes are less often right (68.8 % of 144 pictures measured, 66.7 % of seed 0's 72): a
        // regression there fails too. One seed keeps CI's time (the 144 pictures above took half of this test's 173 s).
        var high = ShapesEvaluation.Run(pipeline, set, [0], steps: 20, guidance: 7.5, scheduler: "euler");
        output.WriteLine($"guidance 7.5: {high}");
        Assert.True(high.Background >= 0.95 && high.Color >= 0.95, high.ToString());
        Assert.True(high.Shape >= 0.62, high.ToString());
    }

    [Fact]
    public void DefaultVaeKeepsTheShapes()
    {
        // The held-out pictures drawn exactly and passed through vae_encoder -> vae_decoder: the ceiling of the shape
        // metric for any UNet on this VAE (measured 87.5 % with the fine-tuned decoder; 59.7 % before it, the VAE
        // before that 41.7 %).
        var set = HeldOutSet.Load(Path.Combine(Model, "evaluation", "heldout.json"));
        using var encoder = new OnnxVaeEncoder(Path.Combine(Model, "vae_encoder", "model.onnx"));
        using var decoder = new OnnxVaeDecoder(Path.Combine(Model, "vae_decoder", "model.onnx"));
        var score = ShapesEvaluation.Drawn(set, encoder, decoder);
        output.WriteLine(score.ToString());
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Background >= 0.95 && score.Color >= 0.95, score.ToString());
        Assert.True(score.Shape >= 0.83, score.ToString());
    }
}
