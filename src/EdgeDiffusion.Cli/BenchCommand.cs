using System.CommandLine;
using EdgeDiffusion.Benchmarks;
using EdgeDiffusion.IO;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff bench: per-component latency, it/s, achieved GFLOP/s, peak RSS and disk size of a random-weight model of a known architecture.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "tiny, sd15, sd21, sd-turbo, cascade-tiny or cascade-lite", Required = true };
        var res = new Option<int?>("--res") { Description = "image side in pixels (default: the architecture's own, e.g. 512)" };
        var runs = new Option<int>("--runs") { Description = "timed runs per component", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first; the first is profiled to count operations (0: GFLOP/s not reported)", DefaultValueFactory = _ => 1 };
        var steps = new Option<int?>("--steps") { Description = "denoising steps of the composed per-picture time (default 20; sd-turbo 1; Stable Cascade: prior steps, 20)" };
        var decoderSteps = new Option<int?>("--decoder-steps") { Description = "Stable Cascade decoder (stage B) steps of the per-picture time (default 10)" };
        var component = new Option<string[]>("--component") { Description = "only this component (unet, prior, decoder …), repeatable", Arity = ArgumentArity.ZeroOrMore };
        var compression = new Option<string?>("--compression") { Description = "compress the folder once first: palettize:6, linear:int8, linear:int4, prune:0.5, w8a8" };
        var compare = new Option<string?>("--compare") { Description = "comma-separated forms measured after a float32 run in this same process, with a ratio table (e.g. w8a8,palettize:6); FORM@unfused runs that form with unfused attention, float32@unfused the float32 folder" };
        var attention = new Option<string>("--attention") { Description = "fused (ONNX Runtime's MultiHeadAttention, flash attention on the CPU) or unfused (MatMul → Softmax → MatMul as the graph has it)", DefaultValueFactory = _ => "fused" };
        var decompress = new Option<string>("--decompress") { Description = "auto, int8, jit or load: how compressed weights run (auto: int8 where calibrated, else jit)", DefaultValueFactory = _ => "auto" };
        var dir = new Option<string?>("--dir") { Description = "where model folders are built once and reused (default ~/.cache/edgediffusion/bench)" };
        var threads = new Option<int>("--threads") { Description = "intra-op threads (0: ONNX Runtime's choice)" };
        var level = new Option<string>("--opt-level") { Description = "ONNX Runtime graph optimization: disabled, basic, extended, layout or all", DefaultValueFactory = _ => "all" };
        var sessionOption = new Option<string[]>("--session-option") { Description = "key=value ONNX Runtime session config entry, repeatable (session.disable_prepacking=1 …)", Arity = ArgumentArity.ZeroOrMore };
        var gemm = new Option<int>("--gemm-size") { Description = "side of the float32 MatMul measuring this machine's peak (0 skips the GEMM and convolution probes)", DefaultValueFactory = _ => 2048 };
        var json = new Option<bool>("--json") { Description = "print JSON instead of the table" };
        var markdown = new Option<string?>("--markdown") { Description = "also write the table as Markdown to this file" };
        var endToEnd = new Option<bool>("--end-to-end") { Description = "also time one whole generation through the pipeline (--steps steps; Stable Cascade: prior --steps, then --decoder-steps) against the composed figure" };
        var sharedAllocator = new Option<bool>("--shared-allocator") { Description = "all sessions allocate from one shared CPU arena (session.use_env_allocators), as generate --shared-allocator" };
        var charts = new Option<string?>("--charts") { Description = "also write PNG charts (time per picture, GFLOP/s, peak RSS by component) into this folder" };
        var command = new Command("bench", "Time each component of a random-weight model of a known architecture (pictures meaningless; time and memory real).")
        {
            arch, res, runs, warmup, steps, decoderSteps, component, compression, compare, attention, decompress, dir, threads, level, sessionOption, gemm, json, markdown, charts, endToEnd, sharedAllocator,
        };
        var devices = RuntimeOptions.AddDeviceOptions(command);
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            var mode = result.GetValue(decompress)!.ToLowerInvariant() switch
            {
                "auto" => DecompressionMode.Auto,
                "jit" => DecompressionMode.Jit,
                "load" => DecompressionMode.Load,
                "int8" => DecompressionMode.Int8,
                var other => throw new InvalidArgumentException("--decompress", $"'{other}' is not a mode; use auto, int8, jit or load"),
            };
            var options = new BenchmarkOptions
            {
                Arch = result.GetValue(arch)!,
                Resolution = result.GetValue(res),
                Runs = result.GetValue(runs),
                Warmup = result.GetValue(warmup),
                Steps = result.GetValue(steps),
                DecoderSteps = result.GetValue(decoderSteps),
                Components = result.GetValue(component) ?? [],
                Compression = result.GetValue(compression),
                Decompression = mode,
                Attention = ParseAttention(result.GetValue(attention)!, "--attention"),
                Directory = result.GetValue(dir) ?? BenchmarkOptions.DefaultDirectory,
                IntraOpThreads = result.GetValue(threads),
                OptimizationLevel = OptimizationLevel(result.GetValue(level)!),
                SessionEntries = DeviceSelector.ParseOptions(result.GetValue(sessionOption) ?? [], "--session-option"),
                Execution = devices.Resolve(result, Console.Error),
                GemmSize = result.GetValue(gemm),
                EndToEnd = result.GetValue(endToEnd),
                SharedAllocator = result.GetValue(sharedAllocator),
                Progress = m => Console.Error.WriteLine(m),
            };
            if (result.GetValue(compare) is { } forms)
            {
                if (options.Compression is not null) throw new InvalidArgumentException("--compare", "give either --compression or --compare, not both");
                var list = forms.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (list.Length == 0) throw new InvalidArgumentException("--compare", "name at least one form, e.g. w8a8,palettize:6");
                var runs = list.Select(form =>
                {
                    var parts = form.Split('@', 2, StringSplitOptions.TrimEntries);
                    string? compressionForm = string.Equals(parts[0], "float32", StringComparison.OrdinalIgnoreCase) ? null : parts[0];
                    if (compressionForm is not null && !string.Equals(compressionForm, ComponentBenchmark.W8A8Form, StringComparison.OrdinalIgnoreCase))
                        ComponentBenchmark.ParseCompression(compressionForm);
                    return options with { Compression = compressionForm, Attention = parts.Length > 1 ? ParseAttention(parts[1], "--compare") : options.Attention };
                }).ToList();
                var reports = new List<BenchmarkReport> { ComponentBenchmark.Run(options, cancellation) };
                foreach (var run in runs) reports.Add(ComponentBenchmark.Run(run, cancellation));
                var table = BenchmarkComparison.ToTable(reports);
                // --json: one array of the reports (each as a single run prints it); the ratio table is for people.
                Console.Out.Write(result.GetValue(json)
                    ? "[" + string.Join("," + Environment.NewLine, reports.Select(r => r.ToJson())) + "]" + Environment.NewLine
                    : string.Concat(reports.Select(r => r.ToTable() + Environment.NewLine)) + table);
                if (result.GetValue(markdown) is { } md) OutputFile.WriteText(md, string.Concat(reports.Select(r => r.ToMarkdown() + Environment.NewLine)) + table, "--markdown");
                if (result.GetValue(charts) is { } compareCharts) foreach (var r in reports) WriteCharts(r, compareCharts);
                return 0;
            }
            var report = ComponentBenchmark.Run(options, cancellation);
            Console.Out.Write(result.GetValue(json) ? report.ToJson() + Environment.NewLine : report.ToTable());
            if (result.GetValue(markdown) is { } file) OutputFile.WriteText(file, report.ToMarkdown(), "--markdown");
            if (result.GetValue(charts) is { } folder) WriteCharts(report, folder);
            return 0;
        })));
        return command;
    }

    private static void WriteCharts(BenchmarkReport report, string folder)
    {
        string form = (report.Compression ?? "float32").Replace(':', '-') + (report.UnfusedAttention ? "-unfused" : "");
        foreach (var (name, png) in report.Charts())
        {
            string path = Path.Combine(folder, $"bench-{report.Arch}-{report.Resolution}-{form}-{name}.png");
            OutputFile.Write(path, png, "--charts");
            Console.Error.WriteLine($"wrote {path}");
        }
    }

    private static AttentionKernel ParseAttention(string text, string option) => text.ToLowerInvariant() switch
    {
        "fused" => AttentionKernel.Fused,
        "unfused" => AttentionKernel.Unfused,
        _ => throw new InvalidArgumentException(option, $"'{text}' is not an attention kernel; use fused or unfused"),
    };

    private static GraphOptimizationLevel OptimizationLevel(string text) => text.ToLowerInvariant() switch
    {
        "disabled" => GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic" => GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended" => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "layout" => GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
        "all" => GraphOptimizationLevel.ORT_ENABLE_ALL,
        _ => throw new InvalidArgumentException("--opt-level", $"'{text}' is not a level; use disabled, basic, extended, layout or all"),
    };
}
