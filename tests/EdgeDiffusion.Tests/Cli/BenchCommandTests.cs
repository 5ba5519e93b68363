using System.Text.Json;
using EdgeDiffusion.Benchmarks;
using EdgeDiffusion.Compression;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class BenchCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("bench");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private JsonElement Bench(params string[] extra)
    {
        var result = CliRunner.Run(["bench", "--arch", "tiny", "--res", "32", "--runs", "2", "--warmup", "1", "--gemm-size", "256", "--dir", _dir, "--json", .. extra]);
        Assert.True(result.ExitCode == 0, result.Error);
        return JsonDocument.Parse(result.Out).RootElement.Clone();
    }

    private static Dictionary<string, long> DiskBytes(JsonElement report) =>
        report.GetProperty("components").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!, c => c.GetProperty("disk_bytes").GetInt64());

    [Fact]
    public void JsonHasPositiveMediansAndDiskSizesOfTheFiles()
    {
        var report = Bench();
        Assert.Contains("random weights", report.GetProperty("note").GetString());
        Assert.True(report.GetProperty("gemm_probe").GetProperty("peak_gflops").GetDouble() > 0);
        var components = report.GetProperty("components").EnumerateArray().ToList();
        Assert.Equal(new[] { "text_encoder", "unet", "vae_decoder" }, components.Select(c => c.GetProperty("name").GetString()));
        foreach (var c in components)
        {
            Assert.True(c.GetProperty("median_ms").GetDouble() > 0);
            Assert.Equal(2, c.GetProperty("latencies_ms").GetArrayLength());
            string model = c.GetProperty("model").GetString()!;
            long files = new DirectoryInfo(Path.GetDirectoryName(model)!).EnumerateFiles("model.onnx*").Sum(f => f.Length);
            Assert.Equal(files, c.GetProperty("disk_bytes").GetInt64());
            // Operations are counted from the profiled warm-up; achieved GFLOP/s is that count over the median.
            double gflop = c.GetProperty("gflop").GetDouble();
            Assert.True(gflop > 0);
            Assert.Equal(gflop / (c.GetProperty("median_ms").GetDouble() / 1000), c.GetProperty("achieved_gflops").GetDouble(), 6);
            if (OperatingSystem.IsLinux()) Assert.True(c.GetProperty("peak_rss_bytes").GetInt64() > 0);
        }
        var unet = components[1];
        Assert.Equal(2, unet.GetProperty("batch").GetInt32());
        Assert.Contains("sample[2x4x4x4]", unet.GetProperty("inputs").EnumerateArray().Select(i => i.GetString()));
        Assert.True(unet.GetProperty("iterations_per_second").GetDouble() > 0);
        Assert.Equal(20, unet.GetProperty("calls_per_picture").GetInt32());
        double composed = components.Sum(c => c.GetProperty("median_ms").GetDouble() * c.GetProperty("calls_per_picture").GetInt32());
        Assert.Equal(composed, report.GetProperty("end_to_end_ms").GetDouble(), 6);
        Assert.True(report.GetProperty("conv_probe").GetProperty("peak_gflops").GetDouble() > 0);
        if (OperatingSystem.IsLinux()) Assert.InRange(report.GetProperty("other_processes_cpu_share").GetDouble(), 0, 1);
    }

    [Fact]
    public void OneComponentWithStepsSessionOptionsAndChartsWritesPngs()
    {
        string charts = Path.Combine(_dir, "charts");
        var report = Bench("--component", "unet", "--steps", "7", "--opt-level", "basic", "--session-option", "session.disable_prepacking=1", "--charts", charts);
        var unet = Assert.Single(report.GetProperty("components").EnumerateArray());
        Assert.Equal(7, unet.GetProperty("calls_per_picture").GetInt32());
        Assert.Equal(JsonValueKind.Null, report.GetProperty("end_to_end_ms").ValueKind);
        Assert.Contains("ORT_ENABLE_BASIC", report.GetProperty("settings").GetString());
        Assert.Contains("session.disable_prepacking=1", report.GetProperty("settings").GetString());
        var pngs = Directory.GetFiles(charts, "*.png").Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(new[] { "bench-tiny-32-float32-gflops.png", "bench-tiny-32-float32-memory.png", "bench-tiny-32-float32-time.png" }.Where(n => OperatingSystem.IsLinux() || !n.Contains("memory")), pngs);
        foreach (var png in Directory.GetFiles(charts)) Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(png)[..4]);
    }

    [Fact]
    public void CompareMeasuresEachFormAfterFloat32AsAJsonArrayAndAMarkdownRatioTable()
    {
        string md = Path.Combine(_dir, "compare.md");
        var result = CliRunner.Run(["bench", "--arch", "tiny", "--res", "32", "--runs", "1", "--warmup", "0", "--gemm-size", "0", "--component", "unet",
            "--dir", _dir, "--json", "--compare", "float32@unfused,linear:int8", "--markdown", md]);
        Assert.True(result.ExitCode == 0, result.Error);
        var reports = JsonDocument.Parse(result.Out).RootElement.EnumerateArray().ToArray();
        Assert.Equal(3, reports.Length);
        Assert.Contains("fused attention", reports[0].GetProperty("settings").GetString());
        Assert.Contains("unfused attention", reports[1].GetProperty("settings").GetString());
        Assert.EndsWith("tiny-linear-int8-calibrated", reports[2].GetProperty("model_folder").GetString());
        Assert.True(DiskBytes(reports[2])["unet"] < DiskBytes(reports[0])["unet"]);
        string table = File.ReadAllText(md);
        Assert.Contains("| float32, unfused attention | unet |", table);
        Assert.Contains("| linear:int8 (auto) | unet |", table);
    }

    [Fact]
    public void CompressedVariantIsSmallerOnDiskAndTheTableAndMarkdownSayWeightsAreRandom()
    {
        var plain = DiskBytes(Bench());
        var compressed = Bench("--compression", "palettize:4", "--decompress", "load");
        Assert.EndsWith("tiny-palettize-4-calibrated", compressed.GetProperty("model_folder").GetString());
        var packed = DiskBytes(compressed);
        Assert.True(packed["unet"] < plain["unet"], $"{packed["unet"]} vs {plain["unet"]}");
        Assert.True(packed.Values.Sum() < plain.Values.Sum());

        string md = Path.Combine(_dir, "bench.md");
        var table = CliRunner.Run("bench", "--arch", "tiny", "--res", "32", "--runs", "1", "--gemm-size", "0", "--dir", _dir, "--markdown", md);
        Assert.True(table.ExitCode == 0, table.Error);
        Assert.Contains("random weights", table.Out);
        Assert.Contains("| unet |", File.ReadAllText(md));
    }

    [Fact]
    public void EndToEndTimesOneGenerationThroughThePipeline()
    {
        var report = Bench("--component", "unet", "--steps", "4", "--end-to-end");
        var generation = report.GetProperty("measured_generation");
        Assert.Equal(4, generation.GetProperty("steps").GetInt32());
        Assert.Equal(7.5, generation.GetProperty("guidance").GetDouble());
        // The tiny folder's scheduler is PNDM, which calls the UNet once more than it has steps.
        Assert.Equal("pndm", generation.GetProperty("scheduler").GetString());
        Assert.Equal(5, generation.GetProperty("denoiser_calls").GetInt32());
        Assert.True(generation.GetProperty("generation_ms").GetDouble() > 0);
        var sdParts = generation.GetProperty("parts").EnumerateArray().ToDictionary(p => p.GetProperty("component").GetString()!);
        Assert.Equal(["text_encoder", "unet", "vae_decoder"], sdParts.Keys);
        Assert.Equal(5, sdParts["unet"].GetProperty("calls").GetInt32());

        // Stable Cascade: prior 3 + decoder 2 steps through the three-stage pipeline, the prior guided (one call per step).
        var cascade = CliRunner.Run("bench", "--arch", "cascade-tiny", "--dir", _dir, "--gemm-size", "0", "--runs", "1", "--warmup", "0",
            "--steps", "3", "--decoder-steps", "2", "--end-to-end", "--json");
        Assert.True(cascade.ExitCode == 0, cascade.Error);
        var measured = System.Text.Json.JsonDocument.Parse(cascade.Out).RootElement.GetProperty("measured_generation");
        Assert.Equal(5, measured.GetProperty("steps").GetInt32());
        Assert.Equal("ddpm-wuerstchen", measured.GetProperty("scheduler").GetString());
        Assert.Equal(5, measured.GetProperty("denoiser_calls").GetInt32());
        Assert.Equal(4.0, measured.GetProperty("guidance").GetDouble());
        // Where its time went, by the composed figure's component names (Stage A is vae_decoder/ in the builder's layout):
        // each stage's runs as the pipeline counted them, within the generation's own time.
        var parts = measured.GetProperty("parts").EnumerateArray().ToDictionary(p => p.GetProperty("component").GetString()!);
        Assert.Equal(["text_encoder", "prior", "decoder", "vae_decoder"], parts.Keys);
        Assert.Equal(3, parts["prior"].GetProperty("calls").GetInt32());
        Assert.Equal(2, parts["decoder"].GetProperty("calls").GetInt32());
        Assert.Equal(1, parts["vae_decoder"].GetProperty("calls").GetInt32());
        Assert.All(parts.Values, p => Assert.True(p.GetProperty("ms").GetDouble() > 0));
        Assert.True(parts.Values.Sum(p => p.GetProperty("ms").GetDouble()) <= measured.GetProperty("generation_ms").GetDouble());
        Assert.True(parts["prior"].GetProperty("composed_ms").GetDouble() > 0);
    }

    [Theory]
    [InlineData("--arch", "--arch", "sd99")]
    [InlineData("--compression", "--compression", "zip:9")]
    [InlineData("--compression", "--compression", "palettize:7")]
    [InlineData("--compression", "--compression", "linear:int3")]
    [InlineData("--decompress", "--decompress", "later")]
    [InlineData("--res", "--res", "30")]
    [InlineData("--runs", "--runs", "0")]
    [InlineData("--steps", "--steps", "0")]
    [InlineData("--opt-level", "--opt-level", "max")]
    [InlineData("--component", "--component", "prior")]
    [InlineData("--session-option", "--session-option", "novalue")]
    public void BadOptionsExitTwoNamingTheOption(string named, string option, string value)
    {
        string[] args = ["bench", "--arch", "tiny", "--dir", _dir, "--gemm-size", "0"];
        var result = CliRunner.Run([.. args.Where((_, i) => option != "--arch" || (i != 1 && i != 2)), option, value]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"error: {named}", result.Error);
    }

    [Fact]
    public void ParseCompressionReadsMethodAndBitsOrType()
    {
        Assert.Equal(6, ComponentBenchmark.ParseCompression("palettize:6").Bits);
        Assert.Equal(QuantizedType.Int8, ComponentBenchmark.ParseCompression("linear:int8").Dtype);
        Assert.Equal(QuantizedType.Int4, ComponentBenchmark.ParseCompression("linear:int4").Dtype);
        Assert.Equal(0.5, ComponentBenchmark.ParseCompression("prune:0.5").Sparsity);
    }
}
