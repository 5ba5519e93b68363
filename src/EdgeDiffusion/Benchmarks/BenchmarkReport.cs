using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeDiffusion.Benchmarks;

/// <summary>
/// One component's figures. Latencies in milliseconds; <see cref="Calls"/> is how often one picture runs it (steps for a
/// denoiser); <see cref="Gflop"/> the operations of one run, counted from the profiled first warm-up (null: not counted);
/// peak RSS null where /proc is not available.
/// </summary>
public sealed record ComponentResult(
    string Name, string Role, string ModelPath, long DiskBytes, IReadOnlyList<string> InputShapes, int Batch, int Calls, double SessionSeconds,
    IReadOnlyList<double> LatenciesMs, double MedianMs, double MinMs, double MaxMs, double? IterationsPerSecond, long? PeakRssBytes, double? Gflop)
{
    /// <summary>Operations per second at the median latency.</summary>
    public double? AchievedGflops => Gflop is double g && MedianMs > 0 ? g / (MedianMs / 1000) : null;

    /// <summary>This component's share of one picture: median × calls.</summary>
    public double PerPictureMs => MedianMs * Calls;
}

/// <summary>One whole generation timed through the pipeline: session creation, the generation itself (steps as given) and the process's peak RSS meanwhile.</summary>
public sealed record MeasuredGeneration(int Steps, double Guidance, string Scheduler, int DenoiserCalls, double LoadSeconds, double GenerationMs, long? PeakRssBytes)
{
    /// <summary>
    /// Where the generation's time went, by benchmark component name (text_encoder, unet or prior / decoder, vae_decoder or
    /// vqgan): the time spent in that model's runs and their count, so each can be set beside its median × calls.
    /// </summary>
    public IReadOnlyList<GenerationPart> Parts { get; init; } = [];
}

/// <summary>One component's share of a timed generation: its runs' time and how many runs (null where the pipeline does not count them).</summary>
public sealed record GenerationPart(string Component, double Ms, int? Calls);

/// <summary>A whole benchmark: the model folder used, the machine's measured float32 peak, and each component's figures.</summary>
public sealed record BenchmarkReport(
    string Arch, int Resolution, string? Compression, string Decompression, string ModelFolder, int Runs, int Warmup, int GemmSize,
    double? GemmGflops, double? ConvGflops, IReadOnlyList<ComponentResult> Components, string Settings, bool AllComponents,
    MeasuredGeneration? Generation = null, double? OtherProcessesCpuShare = null)
{
    /// <summary>Above this share of the CPU taken by other processes during the probes and components, the report warns.</summary>
    public const double BusyMachineShare = 0.05;

    public const string Note = "random weights: pictures would be meaningless; time and memory are real";

    public const string FlopsNote = "GFLOP counts 2 per multiply-add of MatMul/Gemm/Conv-family kernels, read from the profiled first warm-up's shapes; other kernels count 0";

    /// <summary>Whether the run kept the graph's unfused attention (the settings line names the attention kernel).</summary>
    public bool UnfusedAttention => Settings.Contains("unfused attention", StringComparison.Ordinal);

    /// <summary>The higher of the two probes: the float32 peak the components are compared with.</summary>
    public double? PeakGflops => GemmGflops is null && ConvGflops is null ? null : Math.Max(GemmGflops ?? 0, ConvGflops ?? 0);

    /// <summary>Σ median × calls: one picture composed from the component medians (not one timed generation); null when only some components ran.</summary>
    public double? EndToEndMs => AllComponents ? Components.Sum(c => c.PerPictureMs) : null;

    /// <summary>The component's achieved GFLOP/s as a fraction of <see cref="PeakGflops"/>; null where either is unknown.</summary>
    public double? ShareOfPeak(ComponentResult c) => c.AchievedGflops is double a && PeakGflops is double p && p > 0 ? a / p : null;

    public string ToJson()
    {
        var components = new JsonArray();
        foreach (var c in Components)
            components.Add(new JsonObject
            {
                ["name"] = c.Name,
                ["role"] = c.Role,
                ["model"] = c.ModelPath,
                ["disk_bytes"] = c.DiskBytes,
                ["inputs"] = new JsonArray([.. c.InputShapes.Select(s => (JsonNode)JsonValue.Create(s))]),
                ["batch"] = c.Batch,
                ["calls_per_picture"] = c.Calls,
                ["session_seconds"] = c.SessionSeconds,
                ["latencies_ms"] = new JsonArray([.. c.LatenciesMs.Select(l => (JsonNode)JsonValue.Create(l))]),
                ["median_ms"] = c.MedianMs,
                ["min_ms"] = c.MinMs,
                ["max_ms"] = c.MaxMs,
                ["iterations_per_second"] = c.IterationsPerSecond,
                ["peak_rss_bytes"] = c.PeakRssBytes,
                ["gflop"] = c.Gflop,
                ["achieved_gflops"] = c.AchievedGflops,
                ["fraction_of_peak"] = ShareOfPeak(c),
            });
        var root = new JsonObject
        {
            ["note"] = Note,
            ["arch"] = Arch,
            ["resolution"] = Resolution,
            ["compression"] = Compression,
            ["decompression"] = Decompression,
            ["settings"] = Settings,
            ["model_folder"] = ModelFolder,
            ["other_processes_cpu_share"] = OtherProcessesCpuShare,
            ["runs"] = Runs,
            ["warmup"] = Warmup,
            ["gemm_probe"] = new JsonObject { ["size"] = GemmSize, ["peak_gflops"] = GemmGflops },
            ["conv_probe"] = new JsonObject { ["shape"] = "1280->1280 3x3 on 2x16x16", ["peak_gflops"] = ConvGflops },
            ["peak_gflops"] = PeakGflops,
            ["flops_note"] = FlopsNote,
            ["end_to_end_ms"] = EndToEndMs,
            ["end_to_end_note"] = "sum of median x calls per picture over the components, not one timed generation",
            ["measured_generation"] = Generation is { } g ? new JsonObject
            {
                ["steps"] = g.Steps,
                ["guidance"] = g.Guidance,
                ["scheduler"] = g.Scheduler,
                ["denoiser_calls"] = g.DenoiserCalls,
                ["load_seconds"] = g.LoadSeconds,
                ["generation_ms"] = g.GenerationMs,
                ["peak_rss_bytes"] = g.PeakRssBytes,
                ["parts"] = new JsonArray(g.Parts.Select(part => (JsonNode)new JsonObject
                {
                    ["component"] = part.Component, ["ms"] = part.Ms, ["calls"] = part.Calls,
                    ["composed_ms"] = Composed(part)?.PerPictureMs,
                }).ToArray()),
            } : null,
            ["components"] = components,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public string ToTable() => Render(markdown: false);

    public string ToMarkdown() => Render(markdown: true);

    /// <summary>Two PNG bar charts: time per picture by component (median × calls) and achieved GFLOP/s against the peak.</summary>
    public IReadOnlyList<(string Name, byte[] Png)> Charts()
    {
        string what = $"{Arch} {Resolution}² {Compression ?? "float32"}";
        var charts = new List<(string, byte[])>
        {
            ("time", Imaging.BarChart.Png([.. Components.Select(c => $"{c.Name} ×{c.Calls}")], [.. Components.Select(c => c.PerPictureMs / 1000)],
                $"{what}: seconds per picture by component", "s (median × calls)")),
        };
        if (Components.Any(c => c.AchievedGflops is not null))
        {
            var labels = Components.Select(c => c.Name).ToList();
            var values = Components.Select(c => c.AchievedGflops ?? 0).ToList();
            if (PeakGflops is double peak)
            {
                labels.Add("float32 peak (probe)");
                values.Add(peak);
            }
            charts.Add(("gflops", Imaging.BarChart.Png(labels, values, $"{what}: achieved GFLOP/s", "GFLOP/s")));
        }
        if (Components.Any(c => c.PeakRssBytes is not null))
            charts.Add(("memory", Imaging.BarChart.Png([.. Components.Select(c => c.Name)], [.. Components.Select(c => (c.PeakRssBytes ?? 0) / (double)(1L << 30))],
                $"{what}: peak RSS by component", "GiB")));
        return charts;
    }

    private string Render(bool markdown)
    {
        var sb = new StringBuilder();
        string title = $"edgediff bench {Arch} at {Resolution}² ({Compression ?? "float32"}{(Compression is null ? "" : ", decompress " + Decompression)}), {Warmup} warm-up + {Runs} runs";
        sb.AppendLine(markdown ? "## " + title : title);
        sb.AppendLine(markdown ? $"\n*{Note}.*\n" : Note);
        string[] header = ["component", "inputs", "disk", "session s", "median ms", "min ms", "max ms", "it/s", "calls", "s/picture", "peak RSS", "GFLOP", "GFLOP/s", "of peak"];
        var rows = Components.Select(c => new[]
        {
            c.Name, string.Join(" ", c.InputShapes), Bytes(c.DiskBytes), F(c.SessionSeconds, "0.00"), F(c.MedianMs, "0.0"), F(c.MinMs, "0.0"), F(c.MaxMs, "0.0"),
            c.IterationsPerSecond is double it ? F(it, "0.00") : "", c.Calls.ToString(CultureInfo.InvariantCulture), F(c.PerPictureMs / 1000, "0.00"),
            c.PeakRssBytes is long rss ? Bytes(rss) : "n/a", c.Gflop is double g ? F(g, "0.0") : "n/a",
            c.AchievedGflops is double a ? F(a, "0.0") : "n/a",
            ShareOfPeak(c) is double share ? F(100 * share, "0") + " %" : "n/a",
        }).ToList();
        if (markdown)
        {
            sb.AppendLine("| " + string.Join(" | ", header) + " |");
            sb.AppendLine("|" + string.Concat(header.Select(_ => "---|")));
            foreach (var r in rows) sb.AppendLine("| " + string.Join(" | ", r) + " |");
            sb.AppendLine();
        }
        else
        {
            var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
            sb.AppendLine(string.Join("  ", header.Select((h, i) => h.PadRight(widths[i]))));
            foreach (var r in rows) sb.AppendLine(string.Join("  ", r.Select((v, i) => v.PadRight(widths[i]))));
        }
        if (EndToEndMs is double e2e)
            sb.AppendLine($"one picture, composed from the medians (Σ median × calls, not one timed generation): {F(e2e / 1000, "0.00")} s");
        if (Generation is { } gen)
            sb.AppendLine($"one picture, measured through the pipeline ({gen.Steps} steps {gen.Scheduler}, guidance {F(gen.Guidance, "0.##")}, {gen.DenoiserCalls} denoiser calls): "
                + $"{F(gen.GenerationMs / 1000, "0.00")} s after {F(gen.LoadSeconds, "0.0")} s of session creation; peak RSS {(gen.PeakRssBytes is long r ? Bytes(r) : "n/a")}");
        if (Generation is { Parts.Count: > 0 } measured)
        {
            // Per component: the generation's own runs against the composed share, so a gap shows where it is (a session's
            // first run, which the composed medians leave out, or time between the runs).
            var parts = measured.Parts.Select(part => Composed(part) is { } c
                ? $"{part.Component} {F(part.Ms / 1000, "0.00")} s / {F(c.PerPictureMs / 1000, "0.00")} s ({F(part.Ms / c.PerPictureMs, "0.00")}×{(part.Calls is int n ? $", {n} calls" : "")})"
                : $"{part.Component} {F(part.Ms / 1000, "0.00")} s");
            double inRuns = measured.Parts.Sum(p => p.Ms);
            sb.AppendLine($"  its runs against the composed shares: {string.Join(", ", parts)}; between the runs {F((measured.GenerationMs - inRuns) / 1000, "0.00")} s");
        }
        sb.AppendLine(PeakGflops is double peak
            ? $"float32 peak of this machine in ONNX Runtime: {F(peak, "0.0")} GFLOP/s (GEMM {GemmSize}²: {(GemmGflops is double gg ? F(gg, "0.0") : "n/a")}, conv 1280→1280 3×3 on 2×16×16: {(ConvGflops is double cg ? F(cg, "0.0") : "n/a")})"
            : "float32 peak: not measured (--gemm-size 0)");
        sb.AppendLine(FlopsNote);
        sb.AppendLine("it/s: denoiser calls per second at the batch shown (2 = classifier-free guidance); calls: runs per picture; peak RSS: VmHWM reset before each component");
        sb.AppendLine($"session: {Settings}");
        if (OtherProcessesCpuShare is double others)
            sb.AppendLine(others > BusyMachineShare
                ? $"WARNING: other processes used {F(100 * others, "0")} % of the CPU during the probes and components: these figures are lower than this machine gives when idle"
                : $"other processes used {F(100 * others, "0.0")} % of the CPU during the probes and components");
        sb.AppendLine($"model folder: {ModelFolder}");
        return sb.ToString();
    }

    /// <summary>The component a part of the measured generation is set beside (null when that component was not measured).</summary>
    private ComponentResult? Composed(GenerationPart part) => Components.FirstOrDefault(c => c.Name == part.Component);

    internal static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    internal static string Bytes(long b) => b >= 1L << 30 ? F(b / (double)(1L << 30), "0.00") + " GiB"
        : b >= 1L << 20 ? F(b / (double)(1L << 20), "0.0") + " MiB" : F(b / 1024.0, "0.0") + " KiB";
}
