using System.Text.Json;
using EdgeDiffusion.Tests.Pipelines;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class ProfileCommandTests : IClassFixture<TinyModels>, IDisposable
{
    private readonly TinyModels _models;
    private readonly string _dir = TestData.NewTempDir("profile-cli");

    public ProfileCommandTests(TinyModels models) => _models = models;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TinyShapes => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    [Fact]
    public void DevicesListsTheCpuAsTableAndJson()
    {
        var table = CliRunner.Run("devices");
        Assert.True(table.ExitCode == 0, table.Error);
        Assert.Contains("CPUExecutionProvider", table.Out);
        var json = CliRunner.Run("devices", "--json");
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Contains("CPUExecutionProvider", doc.RootElement.GetProperty("providers").EnumerateArray().Select(p => p.GetString()));
        Assert.Contains(doc.RootElement.GetProperty("devices").EnumerateArray(), d => d.GetProperty("device_type").GetString() == "CPU");
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("npu")]
    public void AMissingDeviceIsAnErrorUnlessFallingBack(string device)
    {
        var failed = CliRunner.Run("profile", TinyShapes, "--device", device, "--runs", "1");
        Assert.Equal(2, failed.ExitCode);
        Assert.StartsWith($"error: --device: no {device.ToUpperInvariant()}", failed.Error);
        Assert.Contains("CPUExecutionProvider", failed.Error);

        var fallback = CliRunner.Run("profile", TinyShapes, "--device", device, "--fallback", "cpu", "--runs", "1", "--json");
        Assert.True(fallback.ExitCode == 0, fallback.Error);
        Assert.Contains("warning: --device", fallback.Error);
        using var doc = JsonDocument.Parse(fallback.Out);
        Assert.Equal("cpu", doc.RootElement.GetProperty("execution").GetString());
    }

    [Fact]
    public void GenerateTakesTheDeviceOptionsToo()
    {
        var failed = CliRunner.Run("generate", "x", "--model", _models.Folder(), "-o", Path.Combine(_dir, "x.png"), "--no-cache", "--steps", "1", "--device", "npu");
        Assert.Equal(2, failed.ExitCode);
        Assert.StartsWith("error: --device:", failed.Error);
        var ok = CliRunner.Run("generate", "x", "--model", _models.Folder(), "-o", Path.Combine(_dir, "x.png"), "--no-cache", "--steps", "1", "-q", "--device", "gpu", "--fallback", "cpu");
        Assert.True(ok.ExitCode == 0, ok.Error);
        Assert.True(File.Exists(Path.Combine(_dir, "x.png")));
    }

    [Fact]
    public void JsonAndHtmlReports()
    {
        string html = Path.Combine(_dir, "report.html");
        var result = CliRunner.Run("profile", _models.Folder(), "--component", "vae_decoder", "--runs", "2", "--json", "--html", html);
        Assert.True(result.ExitCode == 0, result.Error);
        using var doc = JsonDocument.Parse(result.Out);
        var component = Assert.Single(doc.RootElement.GetProperty("components").EnumerateArray());
        Assert.Equal("vae_decoder", component.GetProperty("component").GetString());
        var nodes = component.GetProperty("nodes").EnumerateArray().ToList();
        Assert.NotEmpty(nodes);
        Assert.Equal(100, nodes.Sum(n => n.GetProperty("share_percent").GetDouble()), 6);
        Assert.All(nodes, n => Assert.Equal("CPUExecutionProvider", n.GetProperty("provider").GetString()));
        Assert.All(nodes, n => Assert.Equal("CPU", n.GetProperty("unit").GetString()));

        string page = File.ReadAllText(html);
        Assert.Contains("<table>", page);
        var images = System.Text.RegularExpressions.Regex.Matches(page, "data:image/png;base64,([A-Za-z0-9+/=]+)");
        Assert.Equal(2, images.Count);
        foreach (System.Text.RegularExpressions.Match m in images)
        {
            using var bitmap = SkiaSharp.SKBitmap.Decode(Convert.FromBase64String(m.Groups[1].Value));
            Assert.True(bitmap.Width > 0);
        }
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void TableReportAndCoreMLPreview()
    {
        var table = CliRunner.Run("profile", Path.Combine(TinyShapes, "unet", "model.onnx"), "--runs", "1", "--top", "5");
        Assert.True(table.ExitCode == 0, table.Error);
        Assert.Contains("by op type", table.Out);
        Assert.Contains("CPU", table.Out);

        var preview = CliRunner.Run("profile", TinyShapes, "--target", "coreml", "--json");
        Assert.True(preview.ExitCode == 0, preview.Error);
        using var doc = JsonDocument.Parse(preview.Out);
        Assert.True(doc.RootElement.GetProperty("partitions").GetArrayLength() > 0);
        var text = CliRunner.Run("profile", TinyShapes, "--target", "coreml");
        Assert.Contains("prediction", text.Out);

        var bad = CliRunner.Run("profile", TinyShapes, "--target", "tflite");
        Assert.Equal(2, bad.ExitCode);
        Assert.StartsWith("error: --target:", bad.Error);
    }

    [Fact]
    public void GenerationProfileKeepsTracesWhenAsked()
    {
        string traces = Path.Combine(_dir, "traces");
        Directory.CreateDirectory(traces);
        var result = CliRunner.Run("profile", _models.Folder(), "--generation", "--steps", "1", "--json", "--keep-trace", traces);
        Assert.True(result.ExitCode == 0, result.Error);
        using var doc = JsonDocument.Parse(result.Out);
        Assert.Equal("generation", doc.RootElement.GetProperty("mode").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("runs").GetInt32());
        Assert.Equal(3, doc.RootElement.GetProperty("components").GetArrayLength());
        Assert.Equal(3, Directory.GetFiles(traces, "edgediff_profile_*.json").Length);
        Assert.Contains("trace: ", result.Error);
    }
}
