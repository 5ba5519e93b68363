using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.ControlNets;
using EdgeDiffusion.Conversion;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Tests.ControlNets;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// Converts Fixtures/tiny-controlnet (a diffusers ControlNetModel folder for the tiny-sd UNet, seeded F16 weights, written by
/// training/fixtures/make_tiny_controlnet_checkpoint.py) with --unet tiny-sd, and compares the ControlNet's residuals and the
/// residual-taking UNet's output with that script's independent PyTorch computation (float64).
/// </summary>
public class ControlNetConverterTests(ITestOutputHelper output)
{
    private static readonly string Source = Path.Combine(PyTorchReference.FixtureDir, "tiny-controlnet");
    private static readonly string BaseModel = Path.Combine(PyTorchReference.FixtureDir, "tiny-sd");

    private static readonly Lazy<string> Converted = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-controlnet"), "out");
        DiffusersConverter.Convert(Source, dir, new ConvertOptions { BaseUNet = BaseModel });
        return dir;
    });

    [Theory]
    [InlineData("controlnet")]
    [InlineData("unet")]
    public void ConvertedGraph_MatchesThePyTorchReference(string component)
    {
        var reference = PyTorchReference.Load("tiny-controlnet.reference.json")[component]!;
        PyTorchReference.AssertMatches(reference, Path.Combine(Converted.Value, component, "model.onnx"), output, component);
    }

    [Fact]
    public void ConvertedFolder_IsAControlNetFolder_TheConvertedBaseModelGeneratesWith()
    {
        var folder = ControlNetFolder.Open(Converted.Value);
        Assert.EndsWith(Path.Combine("controlnet", "model.onnx"), folder.ControlNetPath);
        Assert.NotNull(folder.UNetPath);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Converted.Value, "controlnet", "config.json")))!;
        Assert.Equal([32, 32, 32, 64], config["residual_channels"]!.AsArray().Select(v => v!.GetValue<int>()));

        string model = Path.Combine(TestData.NewTempDir("edgediff-convert-controlnet"), "base");
        DiffusersConverter.Convert(BaseModel, model);
        var request = new GenerationRequest { Prompt = "a cat", Steps = 2, Guidance = 3, Width = 64, Height = 64, Seed = 3 };
        using var plain = StableDiffusionPipeline.Load(model);
        var without = plain.Generate(request).Images[0];
        using var pipeline = StableDiffusionPipeline.Load(model, controlNets: new ControlNetOptions([folder]));
        var mask = ControlImage.Load(ControlNetTests.Mask(0), 64, 64);
        var off = pipeline.Generate(request with { Controls = [new ControlImage(mask, Scale: 0)] }).Images[0];
        var on = pipeline.Generate(request with { Controls = [new ControlImage(mask, Scale: 1)] }).Images[0];
        // scale 0: zero residuals, the plain UNet's picture; scale 1: the (random-weight) ControlNet moves it
        Assert.True(without.Zip(off, (a, b) => Math.Abs(a - b)).Max() < 1e-4, "scale 0 gives the plain picture");
        Assert.True(without.Zip(on, (a, b) => Math.Abs(a - b)).Max() > 1e-2, "scale 1 changes the picture");
    }

    [Fact]
    public void WithoutBaseUNet_OnlyTheControlNetIsWritten()
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-controlnet"), "alone");
        var result = DiffusersConverter.Convert(Source, dir);
        Assert.Equal(["controlnet"], result.Components.Select(c => c.Name));
        Assert.Null(ControlNetFolder.Open(dir).UNetPath);
    }

    [Fact]
    public void BaseUNetOption_OnlyAppliesToAControlNet()
    {
        var e = Assert.Throws<InvalidArgumentException>(() =>
            DiffusersConverter.Convert(Path.Combine(BaseModel, "vae"), Path.Combine(TestData.NewTempDir("edgediff-convert"), "out"), new ConvertOptions { BaseUNet = BaseModel }));
        Assert.Contains("--unet", e.Message);
    }

    [Fact]
    public void BaseUNetOfOtherWidths_IsAnArchitectureMismatch()
    {
        // a copy of the tiny-sd UNet folder whose config says one more layer per block: other residuals than the ControlNet's
        string unet = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "unet");
        Directory.CreateDirectory(unet);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(BaseModel, "unet", "config.json")))!;
        config["layers_per_block"] = 2;
        File.WriteAllText(Path.Combine(unet, "config.json"), config.ToJsonString());
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(Source, output, new ConvertOptions { BaseUNet = unet }));
        Assert.Equal(ConversionProblem.ArchitectureMismatch, e.Problem);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void Sd15ControlNet_HasTheRealModelsParameterNames()
    {
        // names of the ControlNet's own modules and of the shared down half, as diffusers' ControlNetModel declares them at SD 1.5 size
        var names = ControlNetModel.Parameters(ControlNetConfig.Sd15).Select(p => p.Name).ToHashSet();
        foreach (var name in new[] { "controlnet_cond_embedding.conv_in.weight", "controlnet_cond_embedding.blocks.5.weight", "controlnet_cond_embedding.conv_out.bias",
                     "controlnet_down_blocks.11.weight", "controlnet_mid_block.weight", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight",
                     "mid_block.attentions.0.proj_out.weight", "time_embedding.linear_2.bias" })
            Assert.Contains(name, names);
        Assert.DoesNotContain(names, n => n.StartsWith("up_blocks.", StringComparison.Ordinal) || n.StartsWith("conv_out", StringComparison.Ordinal));
        Assert.Equal(12, ControlNetConfig.Sd15.ResidualChannels.Count);
    }
}

/// <summary>The random-weight ControlNet folder create-model --controlnet writes (for benchmarking a ControlNet's cost).</summary>
public class RandomControlNetFolderTests
{
    [Fact]
    public void RandomControlNet_PairsWithTheSameSeedsBaseFolder()
    {
        string root = TestData.NewTempDir("edgediff-random-controlnet");
        string model = Path.Combine(root, "tiny"), control = Path.Combine(root, "tiny-controlnet");
        StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Tiny, model, 4);
        var written = StableDiffusionArchitecture.WriteControlNetFolder(StableDiffusionConfig.Tiny, control, 4);
        Assert.Equal(["controlnet", "unet"], written.Select(c => c.Name));
        Assert.Equal(ControlNetModel.Parameters(new ControlNetConfig(StableDiffusionConfig.Tiny.UNet, ControlNetConfig.DefaultConditioningEmbeddingChannels))
            .Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b)), written[0].Parameters);

        var request = new GenerationRequest { Prompt = "a cat", Steps = 2, Guidance = 3, Width = 64, Height = 64, Seed = 3 };
        using var plain = StableDiffusionPipeline.Load(model);
        var without = plain.Generate(request).Images[0];
        using var pipeline = StableDiffusionPipeline.Load(model, controlNets: new ControlNetOptions([ControlNetFolder.Open(control)]));
        var mask = ControlImage.Load(ControlNetTests.Mask(0), 64, 64);
        var off = pipeline.Generate(request with { Controls = [new ControlImage(mask, Scale: 0)] }).Images[0];
        // the residual-taking UNet has the base folder's weights: with zero residuals it draws the base picture
        Assert.True(without.Zip(off, (a, b) => Math.Abs(a - b)).Max() < 1e-4);
    }
}
