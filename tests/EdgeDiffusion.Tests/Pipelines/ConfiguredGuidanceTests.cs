using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Tests.Cli;

namespace EdgeDiffusion.Tests.Pipelines;

[Collection("Console")]
public sealed class ConfiguredGuidanceTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("guidance");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Folder(string? index)
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, Guid.NewGuid().ToString("N"))).FullName;
        if (index is not null) File.WriteAllText(Path.Combine(folder, "model_index.json"), index);
        return folder;
    }

    [Fact]
    public void ReadsTheMetadataKeyAndIsNullWhereTheFolderSaysNothing()
    {
        Assert.Equal(2.5, StableDiffusionPipeline.ConfiguredGuidance(Folder("""{"_edgediffusion": {"guidance_scale": 2.5}}""")));
        Assert.Null(StableDiffusionPipeline.ConfiguredGuidance(Folder("""{"_class_name": "OnnxStableDiffusionPipeline"}""")));
        Assert.Null(StableDiffusionPipeline.ConfiguredGuidance(Folder(null)));
    }

    [Theory]
    [InlineData("""{"_edgediffusion": {"guidance_scale": "high"}}""", "guidance_scale")]
    [InlineData("""{"_edgediffusion": {"guidance_scale": -1}}""", "guidance_scale")]
    [InlineData("""{"_edgediffusion": """, "not valid JSON")]
    public void ABadValueNamesTheFile(string index, string said)
    {
        string folder = Folder(index);
        var e = Assert.Throws<ModelFolderException>(() => StableDiffusionPipeline.ConfiguredGuidance(folder));
        Assert.Contains("model_index.json", e.Message);
        Assert.Contains(said, e.Message);
    }

    [Fact]
    public void GenerateOnTheShippedModelUsesItsGuidanceUnlessOneIsGiven()
    {
        double shipped = StableDiffusionPipeline.ConfiguredGuidance(Path.Combine(TestData.RepoRoot, "models", "tiny-shapes"))
            ?? throw new InvalidOperationException("models/tiny-shapes/model_index.json names no guidance_scale");
        Assert.NotEqual(GenerationRequest.DefaultGuidance, shipped);
        string png = Path.Combine(_dir, "default.png");
        var run = CliRunner.Run("generate", "a red circle on a blue background", "-o", png, "-q", "--no-cache", "--steps", "2");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains(FormattableString.Invariant($"CFG scale: {shipped}"), PngText.ReadParameters(png));
        var given = CliRunner.Run("generate", "a red circle on a blue background", "-o", png, "-q", "--no-cache", "--steps", "2", "-g", "7.5");
        Assert.True(given.ExitCode == 0, given.Error);
        Assert.Contains("CFG scale: 7.5", PngText.ReadParameters(png));
    }

    [Fact]
    public void TheLibraryLoadsTheDefaultModelBesideItsBinariesAndUsesItsGuidanceUnlessOneIsGiven()
    {
        // The library project copies models/tiny-shapes into the output of whatever references it (here the tests).
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "models", "tiny-shapes"), StableDiffusionPipeline.DefaultModel);
        using var pipeline = StableDiffusionPipeline.Load();
        Assert.Equal("tiny-shapes", pipeline.Name);
        Assert.Equal(3.0, pipeline.ModelGuidance);
        var request = new GenerationRequest { Prompt = "a red circle on a blue background", Steps = 3, Seed = 1, Width = 64, Height = 64 };
        Assert.Null(request.Guidance);
        var own = pipeline.Generate(request);
        var explicitThree = pipeline.Generate(request with { Guidance = 3 });
        var sevenAndAHalf = pipeline.Generate(request with { Guidance = 7.5 });
        Assert.Equal(3.0, own.Guidance);
        Assert.Equal(7.5, sevenAndAHalf.Guidance);
        Assert.Equal(own.Images[0], explicitThree.Images[0]);
        Assert.NotEqual(own.Images[0], sevenAndAHalf.Images[0]);

        string png = Path.Combine(_dir, "saved.png");
        own.SavePng(png);
        Assert.Equal("a red circle on a blue background\nSteps: 3, Sampler: euler, CFG scale: 3, Seed: 1, Size: 64x64, Model: tiny-shapes", PngText.ReadParameters(png));
        Assert.Equal(own.Image().Pixels, RgbaImage.Load(png).Pixels);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
        var torch = pipeline.Generate(request with { Noise = "torch" });
        Assert.EndsWith(", RNG: torch", torch.Parameters().ToParametersText());
        Assert.Throws<ArgumentOutOfRangeException>(() => own.SavePng(png, 1));
    }
}
