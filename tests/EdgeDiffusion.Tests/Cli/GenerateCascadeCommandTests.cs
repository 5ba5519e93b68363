using EdgeDiffusion.Imaging;
using EdgeDiffusion.Tests.Architectures;

namespace EdgeDiffusion.Tests.Cli;

/// <summary>`edgediff generate` on a Stable Cascade folder (the random-weight cascade-tiny): the stages' options, PNG parameters, and the SD-only options refused.</summary>
[Collection("Console")]
public sealed class GenerateCascadeCommandTests(TinyCascadeFolderFixture tiny) : IClassFixture<TinyCascadeFolderFixture>, IDisposable
{
    private readonly string _dir = TestData.NewTempDir("generate-cascade");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WritesOnePngPerImageWithTheStagesInItsParameters()
    {
        string output = Path.Combine(_dir, "c.png");
        var r = CliRunner.Run("generate", "a red circle", "--model", tiny.Folder, "-o", output, "--count", "2", "--seed", "9",
            "--prior-steps", "3", "--decoder-steps", "2", "--prior-guidance", "2.5", "-q", "--no-cache");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("Stable Cascade prior 3 + decoder 2 steps", r.Out);
        Assert.Contains("prior", r.Out);
        string parameters = PngText.ReadParameters(Path.Combine(_dir, "c-1.png"))!;
        Assert.Contains("Sampler: \"ddpm-wuerstchen (prior 3, decoder 2 steps; decoder CFG 0)\"", parameters);
        Assert.Contains("CFG scale: 2.5, Seed: 10, Size: 64x64", parameters);
    }

    [Theory]
    [InlineData("--steps", "5")]
    [InlineData("--guidance", "3")]
    [InlineData("--scheduler", "euler")]
    public void SdOnlyOptionsAreOneLineErrors(string option, string value)
    {
        var r = CliRunner.Run("generate", "a red circle", "--model", tiny.Folder, "-o", Path.Combine(_dir, "x.png"), option, value, "-q", "--no-cache");
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith($"error: {option}: does not apply to the Stable Cascade folder", r.Error);
        Assert.Single(r.Error.Trim().Split('\n'));
        Assert.False(File.Exists(Path.Combine(_dir, "x.png")));
    }
}
