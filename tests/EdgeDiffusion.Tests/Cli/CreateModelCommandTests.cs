using EdgeDiffusion.Architectures;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class CreateModelCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("create-model");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WritesAFolderThatInspectAndThePipelineRead()
    {
        string folder = Path.Combine(_dir, "tiny");
        var result = CliRunner.Run("create-model", "--arch", "tiny", "-o", folder, "--seed", "3");
        Assert.True(result.ExitCode == 0, result.Error);
        var counts = StableDiffusionArchitecture.ParameterCounts(StableDiffusionConfig.Tiny);
        var inspection = ModelFolderInspection.Inspect(folder);
        Assert.Equal(new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" }, inspection.Components.Select(c => c.Component));
        foreach (var c in inspection.Components) Assert.Equal(counts[c.Component], c.Model.ParameterCount);
        Assert.Contains(counts["unet"].ToString("N0", System.Globalization.CultureInfo.InvariantCulture), result.Out);
        using var pipeline = StableDiffusionPipeline.Load(folder);
        Assert.Equal((64, 64), pipeline.DefaultSize);
    }

    [Fact]
    public void AFailedWriteLeavesNoFolderBehind()
    {
        string target = Path.Combine(_dir, "never");
        var result = CliRunner.Run("create-model", "--arch", "tiny", "-o", target, "--tokenizer", Path.Combine(_dir, "no-vocab-here"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("vocab.json", result.Error);
        Assert.False(Directory.Exists(target));
        Assert.Empty(Directory.GetDirectories(_dir));
    }

    [Fact]
    public void UnknownArchitectureIsNamed()
    {
        var result = CliRunner.Run("create-model", "--arch", "sd99", "-o", Path.Combine(_dir, "x"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("sd99", result.Error);
        Assert.Contains("sd15", result.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "x")));
    }
}
