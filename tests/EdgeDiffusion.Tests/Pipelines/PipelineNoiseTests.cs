using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Pipelines;

/// <summary>GenerationRequest.Noise: validated by name, and each image's source made through NoiseSources.</summary>
public sealed class PipelineNoiseTests
{
    private static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    private static GenerationRequest Request(string noise, ulong seed = 5, int count = 1) => new()
    {
        Prompt = "a red circle on a blue background", Steps = 6, Guidance = 3, Width = 64, Height = 64, Seed = seed, Count = count, Noise = noise,
    };

    [Fact]
    public void TheDefaultIsEdgediffAndUnknownNamesNameTheRngOption()
    {
        Assert.Equal("edgediff", new GenerationRequest { Prompt = "x" }.Noise);
        var e = Assert.Throws<InvalidArgumentException>(() => Request("philox").Validate());
        Assert.Equal("--rng", e.Argument);
        Assert.Equal("--rng: \"philox\" is not a noise source; use one of edgediff, torch, numpy", e.Message);
        Request("Torch").Validate();
    }

    [Fact]
    public void NumpySeedsMustFitThirtyTwoBitsForEveryImage()
    {
        Request("numpy", seed: uint.MaxValue).Validate();
        var e = Assert.Throws<InvalidArgumentException>(() => Request("numpy", seed: uint.MaxValue, count: 2).Validate());
        Assert.Equal("--seed", e.Argument);
        Request("torch", seed: ulong.MaxValue).Validate();
    }

    [Fact]
    public void EachSourceGivesItsOwnPicturesAndImageIOfABatchEqualsSeedPlusI()
    {
        using var pipeline = StableDiffusionPipeline.Load(Model);
        var edgediff = pipeline.Generate(Request("edgediff")).Images[0];
        var torch = pipeline.Generate(Request("torch")).Images[0];
        var numpy = pipeline.Generate(Request("numpy")).Images[0];
        Assert.NotEqual(edgediff, torch);
        Assert.NotEqual(torch, numpy);
        Assert.Equal(torch, pipeline.Generate(Request("torch")).Images[0]);

        var batch = pipeline.Generate(Request("torch", seed: 4, count: 2));
        Assert.Equal([4UL, 5UL], batch.Seeds);
        Assert.Equal(torch, batch.Images[1]);
    }
}
