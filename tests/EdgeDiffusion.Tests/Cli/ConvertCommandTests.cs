namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public class ConvertCommandTests
{
    private static readonly string Source = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures", "tiny-sd");
    private readonly string _dir = TestData.NewTempDir("convert");

    [Fact]
    public void ConvertedFolder_Generates()
    {
        string output = Path.Combine(_dir, "tiny-onnx");
        var convert = CliRunner.Run("convert", Source, "-o", output, "--arch", "tiny");
        Assert.True(convert.ExitCode == 0, convert.Error);
        Assert.Contains("unet", convert.Out);
        Assert.Contains("every checkpoint tensor used once", convert.Out);

        string png = Path.Combine(_dir, "a.png");
        var run = CliRunner.Run("generate", "a photo of a cat", "--model", output, "-o", png, "-q", "--no-cache", "--steps", "2");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.True(File.Exists(png));
    }

    [Fact]
    public void Problems_AreOneLineWithExitCode2()
    {
        var missing = CliRunner.Run("convert", Path.Combine(_dir, "nowhere"), "-o", Path.Combine(_dir, "out"));
        Assert.Equal(2, missing.ExitCode);
        Assert.StartsWith("error: ", missing.Error);
        Assert.Single(missing.Error.Trim().Split('\n'));

        var f16 = CliRunner.Run("convert", Source, "-o", Path.Combine(_dir, "out"), "--dtype", "float16");
        Assert.Equal(2, f16.ExitCode);
        Assert.Contains("not implemented", f16.Error);
    }
}
