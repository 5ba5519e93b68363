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

        string single = Path.Combine(Path.GetDirectoryName(Source)!, "single-file", "tiny-sd1.safetensors");
        var noTokenizer = CliRunner.Run("convert", single, "-o", Path.Combine(_dir, "out"), "--arch", "tiny");
        Assert.Equal(2, noTokenizer.ExitCode);
        Assert.Single(noTokenizer.Error.Trim().Split('\n'));
        Assert.Contains("--tokenizer DIR", noTokenizer.Error);

        var unknownArch = CliRunner.Run("convert", Path.Combine(Source, "unet", "diffusion_pytorch_model.fp16.safetensors"), "-o", Path.Combine(_dir, "out"));
        Assert.Equal(2, unknownArch.ExitCode);
        Assert.Contains("not a Stable Diffusion 1.x/2.x single-file checkpoint", unknownArch.Error);
        Assert.Contains("pass the diffusers folder", unknownArch.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));
    }

    [Fact]
    public void SingleFile_ConvertsAndCompressesInOneCommand()
    {
        string fixtures = Path.GetDirectoryName(Source)!;
        string output = Path.Combine(_dir, "tiny-6bit");
        var convert = CliRunner.Run("convert", Path.Combine(fixtures, "single-file", "tiny-sd1.safetensors"), "-o", output, "--arch", "tiny",
            "--tokenizer", Path.Combine(Source, "tokenizer"), "--compress", "palettize:6");
        Assert.True(convert.ExitCode == 0, convert.Error);
        Assert.Contains("compressed", convert.Out);
        Assert.DoesNotContain(Directory.EnumerateDirectories(_dir), d => d.Contains(".float32-", StringComparison.Ordinal));

        string png = Path.Combine(_dir, "b.png");
        var run = CliRunner.Run("generate", "a photo of a cat", "--model", output, "-o", png, "-q", "--no-cache", "--steps", "2");
        Assert.True(run.ExitCode == 0, run.Error);
    }

    [Fact]
    public void ControlNet_ConvertsWithItsBaseUNet_AndGenerates()
    {
        string fixtures = Path.GetDirectoryName(Source)!;
        string model = Path.Combine(_dir, "tiny-onnx"), control = Path.Combine(_dir, "tiny-controlnet");
        Assert.Equal(0, CliRunner.Run("convert", Source, "-o", model).ExitCode);
        var convert = CliRunner.Run("convert", Path.Combine(fixtures, "tiny-controlnet"), "-o", control, "--unet", Source);
        Assert.True(convert.ExitCode == 0, convert.Error);
        Assert.Contains("ControlNetModel", convert.Out);

        string png = Path.Combine(_dir, "c.png");
        string mask = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes-controlnet", "evaluation", "masks", "00-circle.png");
        var run = CliRunner.Run("generate", "a photo of a cat", "--model", model, "--control-model", control, "--control-image", mask, "-o", png, "-q", "--no-cache", "--steps", "2");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.True(File.Exists(png));
    }

    [Fact]
    public void UnsupportedComponentClass_IsOneLineWithExitCode2()
    {
        string source = Path.Combine(_dir, "video-unet");
        Directory.CreateDirectory(source);
        File.WriteAllText(Path.Combine(source, "config.json"), """{"_class_name": "UNetSpatioTemporalConditionModel"}""");
        var result = CliRunner.Run("convert", source, "-o", Path.Combine(_dir, "out"));
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
        Assert.Contains("UNetSpatioTemporalConditionModel", result.Error);
    }
}
