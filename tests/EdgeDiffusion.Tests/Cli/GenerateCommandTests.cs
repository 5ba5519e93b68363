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
}
