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
}
