using EdgeDiffusion.Tests.ControlNets;

namespace EdgeDiffusion.Tests.Cli;

/// <summary>`generate --control-image` with the default model's ControlNet, and its one-line errors (exit code 2) before any session.</summary>
[Collection("Console")]
public sealed class ControlNetCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("controlnet-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ControlImageUsesTheControlNetBesideTheDefaultModel()
    {
        string plain = Path.Combine(_dir, "plain.png"), controlled = Path.Combine(_dir, "controlled.png");
        Assert.Equal(0, CliRunner.Run("generate", "a red circle on a blue background", "-o", plain, "-q", "--no-cache").ExitCode);
        var r = CliRunner.Run("generate", "a red circle on a blue background", "-o", controlled, "-q", "--no-cache", "--control-image", ControlNetTests.Mask(0));
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("controlnet", r.Out);
        Assert.NotEqual(File.ReadAllBytes(plain), File.ReadAllBytes(controlled));
        var explicitModel = CliRunner.Run("generate", "a red circle on a blue background", "-o", Path.Combine(_dir, "x.png"), "-q", "--no-cache",
            "--control-image", ControlNetTests.Mask(0), "--control-model", ControlNetTests.ControlModel, "--control-scale", "0.8", "--control-end", "0.5");
        Assert.True(explicitModel.ExitCode == 0, explicitModel.Error);
    }

    [Theory]
    [InlineData("missing", "none.png")]
    [InlineData("text", "mask.txt")]
    public void UnreadableControlImagesExitTwoNamingTheFile(string kind, string name)
    {
        string path = Path.Combine(_dir, name);
        if (kind == "text") File.WriteAllText(path, "hello");
        var r = CliRunner.Run("generate", "a red circle", "-o", Path.Combine(_dir, "x.png"), "-q", "--no-cache", "--control-image", path);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(name, r.Error);
        Assert.Single(r.Error.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("--control-scale", "-1", "--control-scale:")]
    [InlineData("--control-start", "0.9", "--control-start:")]
    [InlineData("--control-model", "/no/such/folder", "ControlNet folder not found")]
    public void BadControlOptionsExitTwo(string option, string value, string expected)
    {
        var r = CliRunner.Run("generate", "a red circle", "-o", Path.Combine(_dir, "x.png"), "-q", "--no-cache", "--control-image", ControlNetTests.Mask(0),
            option, value, "--control-end", "0.5");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Error);
    }

    [Fact]
    public void ControlOptionsWithoutAControlImageAndAModelWithoutControlNetExitTwo()
    {
        var r = CliRunner.Run("generate", "a red circle", "-o", Path.Combine(_dir, "x.png"), "-q", "--control-scale", "0.5");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--control-scale: needs a --control-image", r.Error);
        var other = CliRunner.Run("generate", "a", "--model", Path.Combine(TestData.RepoRoot, "models", "tiny-random-sd"), "-o", Path.Combine(_dir, "y.png"), "-q",
            "--control-image", ControlNetTests.Mask(0));
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("--control-model DIR", other.Error);
    }
}
