using EdgeDiffusion.Imaging;
using EdgeDiffusion.Tests.Pipelines;
using SkiaSharp;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class GenerateCommandTests : IClassFixture<TinyModels>, IDisposable
{
    private readonly TinyModels _models;
    private readonly string _dir = TestData.NewTempDir("generate");

    public GenerateCommandTests(TinyModels models) => _models = models;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>generate with small defaults; an option given in <paramref name="extra"/> replaces the default.</summary>
    private CliResult Generate(string output, params string[] extra)
    {
        var args = new List<string> { "generate", "a red circle", "--model", _models.Folder(), "-o", output, "-q", "--cache-dir", Path.Combine(_dir, "cache") };
        foreach (var (option, value) in new[] { ("--steps", "3"), ("--width", "64"), ("--height", "64") })
            if (!extra.Contains(option)) args.AddRange([option, value]);
        return CliRunner.Run([.. args, .. extra]);
    }

    [Fact]
    public void WritesAPngWithItsParametersAndTheSameSeedGivesTheSameBytes()
    {
        string a = Path.Combine(_dir, "a.png"), b = Path.Combine(_dir, "b.png");
        var first = Generate(a, "--seed", "5", "--scheduler", "dpm++2m");
        Assert.True(first.ExitCode == 0, first.Error);
        Assert.Contains("wrote", first.Out);
        Assert.Contains("it/s", first.Out);
        Assert.Equal(0, Generate(b, "--seed", "5", "--scheduler", "dpm++2m").ExitCode);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));

        using var bitmap = SKBitmap.Decode(a);
        Assert.Equal(64, bitmap.Width);
        string parameters = PngText.ReadParameters(a)!;
        Assert.StartsWith("a red circle\n", parameters);
        Assert.Contains("Steps: 3, Sampler: dpm++2m", parameters);
        Assert.Contains("Seed: 5, Size: 64x64", parameters);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp*"));
    }

    [Fact]
    public void CountWritesNumberedFiles()
    {
        var result = Generate(Path.Combine(_dir, "n.png"), "--count", "2");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.True(File.Exists(Path.Combine(_dir, "n-0.png")));
        Assert.True(File.Exists(Path.Combine(_dir, "n-1.png")));
        Assert.Contains("Seed: 43", PngText.ReadParameters(Path.Combine(_dir, "n-1.png")));
    }

    [Fact]
    public void Img2ImgFromAFile()
    {
        string init = Path.Combine(_dir, "init.png");
        Assert.Equal(0, Generate(init).ExitCode);
        string output = Path.Combine(_dir, "out.png");
        var result = Generate(output, "--init-image", init, "--strength", "0.6");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("vae encoder", result.Out);
        Assert.Contains("Denoising strength: 0.6", PngText.ReadParameters(output));
    }

    [Theory]
    [InlineData("--width", "100", "--width")]
    [InlineData("--steps", "0", "--steps")]
    [InlineData("--scheduler", "bogus", "scheduler")]
    public void BadArgumentsExit2WithOneLineNamingThem(string option, string value, string named)
    {
        string output = Path.Combine(_dir, "bad.png");
        var result = Generate(output, option, value);
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.Error);
        Assert.Contains(named, result.Error);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void UnreadableInitImageIsNamed()
    {
        string garbage = Path.Combine(_dir, "garbage.png");
        File.WriteAllText(garbage, "not an image");
        var result = Generate(Path.Combine(_dir, "x.png"), "--init-image", garbage);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("garbage.png", result.Error);
        Assert.Equal("not an image", File.ReadAllText(garbage));
    }

    [Fact]
    public void MissingModelFolderIsNamed()
    {
        var result = CliRunner.Run("generate", "x", "--model", Path.Combine(_dir, "nowhere"), "-o", Path.Combine(_dir, "x.png"), "--no-cache");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("nowhere", result.Error);
    }

    /// <summary>A folder that passes the first look (model_index.json) but fails as soon as anything is loaded from it.</summary>
    private string UnloadableModel()
    {
        string folder = Path.Combine(_dir, "unloadable");
        Directory.CreateDirectory(Path.Combine(folder, "unet"));
        File.WriteAllText(Path.Combine(folder, "model_index.json"), "{}");
        File.WriteAllText(Path.Combine(folder, "unet", "model.onnx"), "not onnx");
        return folder;
    }

    [Fact]
    public void BadStrengthIsRejectedBeforeAnythingIsLoaded()
    {
        // The unloadable model would fail first if the strength were checked after loading (it was).
        string init = Path.Combine(_dir, "init.png");
        Assert.Equal(0, Generate(init).ExitCode);
        var result = CliRunner.Run("generate", "a red circle", "--model", UnloadableModel(), "--init-image", init, "--strength", "2",
            "-o", Path.Combine(_dir, "s.png"), "-q", "--no-cache");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: --strength: 2 is out of range", result.Error);
        Assert.Single(result.Error.TrimEnd().Split('\n'));
    }

    /// <summary>A folder this process cannot create files in: a read-only one, or /sys where root ignores permissions.</summary>
    private string? UnwritableFolder()
    {
        string folder = Path.Combine(_dir, "read-only");
        Directory.CreateDirectory(folder);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            File.WriteAllText(Path.Combine(folder, "probe"), "");
            File.Delete(Path.Combine(folder, "probe"));
        }
        catch (UnauthorizedAccessException) { return folder; }
        return OperatingSystem.IsLinux() && Directory.Exists("/sys/kernel") ? "/sys" : null; // running as root
    }

    [Fact]
    public void AnUnwritableOutputIsFoundBeforeLoadingAndNamedAsGiven()
    {
        string? folder = UnwritableFolder();
        if (folder is null) return; // no folder this user cannot write (root on a system without sysfs)
        string output = Path.Combine(folder, "edgediff-test.png");
        try
        {
            var result = CliRunner.Run("generate", "a red circle", "--model", UnloadableModel(), "-o", output, "-q", "--no-cache");
            Assert.Equal(2, result.ExitCode);
            Assert.StartsWith($"error: --output: {output} cannot be written", result.Error);
            Assert.DoesNotContain(".tmp", result.Error);
            Assert.Single(result.Error.TrimEnd().Split('\n'));
            Assert.False(File.Exists(output));
        }
        finally
        {
            if (!OperatingSystem.IsWindows() && folder.StartsWith(_dir, StringComparison.Ordinal))
                File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void ZeroWidthSaysWhatToUse()
    {
        var result = Generate(Path.Combine(_dir, "w.png"), "--width", "0");
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("error: --width: 0 is not a positive multiple of 8; use 8 or more (the default model, tiny-shapes, is made for 64)", result.Error.TrimEnd());
        Assert.Contains("use 64 or 72", Generate(Path.Combine(_dir, "w.png"), "--width", "70").Error);
    }

    [Fact]
    public void RngChoosesTheNoiseAndIsRecordedWhenNotTheDefault()
    {
        string[] paths = ["edgediff.png", "torch-a.png", "torch-b.png", "numpy.png"];
        string Path_(string name) => Path.Combine(_dir, name);
        var runs = new[]
        {
            Generate(Path_(paths[0])),
            Generate(Path_(paths[1]), "--rng", "torch"),
            Generate(Path_(paths[2]), "--rng", "TORCH"),
            Generate(Path_(paths[3]), "--rng", "numpy"),
        };
        foreach (var run in runs) Assert.True(run.ExitCode == 0, run.Error);
        byte[] Pixels(string name) => RgbaImage.Decode(File.ReadAllBytes(Path_(name))).Pixels;
        Assert.NotEqual(Pixels(paths[0]), Pixels(paths[1]));
        Assert.NotEqual(Pixels(paths[1]), Pixels(paths[3]));
        Assert.Equal(File.ReadAllBytes(Path_(paths[1])), File.ReadAllBytes(Path_(paths[2]))); // same seed, same noise: same picture
        Assert.DoesNotContain("RNG", PngText.ReadParameters(Path_(paths[0])));
        Assert.EndsWith(", RNG: torch", PngText.ReadParameters(Path_(paths[1])));
        Assert.EndsWith(", RNG: numpy", PngText.ReadParameters(Path_(paths[3])));

        var bad = Generate(Path_("bad-rng.png"), "--rng", "cuda");
        Assert.Equal(2, bad.ExitCode);
        Assert.Equal("error: --rng: \"cuda\" is not a noise source; use one of edgediff, torch, numpy", bad.Error.TrimEnd());
        Assert.False(File.Exists(Path_("bad-rng.png")));
    }

    [Fact]
    public void DecompressTakesLowerOrUpperCaseAndHelpShowsLowerCase()
    {
        Assert.True(Generate(Path.Combine(_dir, "l.png"), "--decompress", "load") is { ExitCode: 0 } a, "--decompress load");
        Assert.True(Generate(Path.Combine(_dir, "u.png"), "--decompress", "JIT") is { ExitCode: 0 }, "--decompress JIT");
        var help = CliRunner.Run("generate", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--decompress <auto|jit|load|int8>", help.Out);
        Assert.DoesNotContain("Jit", help.Out);
        Assert.Contains("--rng <edgediff|torch|numpy>", help.Out);
    }

    [Fact]
    public void HelpSaysTheDefaultModel()
    {
        var help = CliRunner.Run("generate", "--help");
        Assert.Equal(0, help.ExitCode);
        string text = string.Join(" ", help.Out.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("models/tiny-shapes", text);
        Assert.Contains("64×64", text);
        Assert.Contains("guidance 3", text);
    }
}
