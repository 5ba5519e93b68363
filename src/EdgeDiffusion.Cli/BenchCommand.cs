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
        var compression = new Option<string?>("--compression") { Description = "compress the folder once first: palettize:6, linear:int8, linear:int4, prune:0.5" };
        var decompress = new Option<string>("--decompress") { Description = "jit or load: when compressed weights become float32", DefaultValueFactory = _ => "jit" };
        var dir = new Option<string?>("--dir") { Description = "where model folders are built once and reused (default ~/.cache/edgediffusion/bench)" };
        var threads = new Option<int>("--threads") { Description = "intra-op threads (0: ONNX Runtime's choice)" };
        var level = new Option<string>("--opt-level") { Description = "ONNX Runtime graph optimization: disabled, basic, extended, layout or all", DefaultValueFactory = _ => "all" };
        var sessionOption = new Option<string[]>("--session-option") { Description = "key=value ONNX Runtime session config entry, repeatable (session.disable_prepacking=1 …)", Arity = ArgumentArity.ZeroOrMore };
        var gemm = new Option<int>("--gemm-size") { Description = "side of the float32 MatMul measuring this machine's peak (0 skips the GEMM and convolution probes)", DefaultValueFactory = _ => 2048 };
        var json = new Option<bool>("--json") { Description = "print JSON instead of the table" };
        var markdown = new Option<string?>("--markdown") { Description = "also write the table as Markdown to this file" };
        var endToEnd = new Option<bool>("--end-to-end") { Description = "also time one whole generation through the pipeline (Stable Diffusion architectures; --steps steps)" };
        var charts = new Option<string?>("--charts") { Description = "also write PNG charts (time per picture, GFLOP/s, peak RSS by component) into this folder" };
        var command = new Command("bench", "Time each component of a random-weight model of a known architecture (pictures meaningless; time and memory real).")
        {
            arch, res, runs, warmup, steps, decoderSteps, component, compression, decompress, dir, threads, level, sessionOption, gemm, json, markdown, charts, endToEnd,
        };
        var devices = RuntimeOptions.AddDeviceOptions(command);
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            var mode = result.GetValue(decompress)!.ToLowerInvariant() switch
            {
                "jit" => DecompressionMode.Jit,
                "load" => DecompressionMode.Load,
                var other => throw new InvalidArgumentException("--decompress", $"'{other}' is not a mode; use jit or load"),
            };
            var report = ComponentBenchmark.Run(new BenchmarkOptions
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
                Directory = result.GetValue(dir) ?? BenchmarkOptions.DefaultDirectory,
                IntraOpThreads = result.GetValue(threads),
                OptimizationLevel = OptimizationLevel(result.GetValue(level)!),
                SessionEntries = DeviceSelector.ParseOptions(result.GetValue(sessionOption) ?? [], "--session-option"),
                Execution = devices.Resolve(result, Console.Error),
                GemmSize = result.GetValue(gemm),
                EndToEnd = result.GetValue(endToEnd),
                Progress = m => Console.Error.WriteLine(m),
            }, cancellation);
            Console.Out.Write(result.GetValue(json) ? report.ToJson() + Environment.NewLine : report.ToTable());
            if (result.GetValue(markdown) is { } file) OutputFile.WriteText(file, report.ToMarkdown(), "--markdown");
            if (result.GetValue(charts) is { } folder)
                foreach (var (name, png) in report.Charts())
                {
                    string path = Path.Combine(folder, $"bench-{report.Arch}-{report.Resolution}-{(report.Compression ?? "float32").Replace(':', '-')}-{name}.png");
                    OutputFile.Write(path, png, "--charts");
                    Console.Error.WriteLine($"wrote {path}");
                }
            return 0;
        })));
        return command;
    }

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
