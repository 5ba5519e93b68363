using System.CommandLine;
using EdgeDiffusion.Benchmarks;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff bench: per-component latency, it/s, peak RSS and disk size of a random-weight model of a known architecture.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "tiny, sd15, sd21, sd-turbo, cascade-tiny or cascade-lite", Required = true };
        var res = new Option<int?>("--res") { Description = "image side in pixels (default: the architecture's own, e.g. 512)" };
        var runs = new Option<int>("--runs") { Description = "timed runs per component", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first", DefaultValueFactory = _ => 1 };
        var compression = new Option<string?>("--compression") { Description = "compress the folder once first: palettize:6, linear:int8, linear:int4, prune:0.5" };
        var decompress = new Option<string>("--decompress") { Description = "jit or load: when compressed weights become float32", DefaultValueFactory = _ => "jit" };
        var dir = new Option<string?>("--dir") { Description = "where model folders are built once and reused (default ~/.cache/edgediffusion/bench)" };
        var threads = new Option<int>("--threads") { Description = "intra-op threads (0: ONNX Runtime's choice)" };
        var gemm = new Option<int>("--gemm-size") { Description = "side of the float32 MatMul measuring this machine's peak (0 skips it)", DefaultValueFactory = _ => 2048 };
        var json = new Option<bool>("--json") { Description = "print JSON instead of the table" };
        var markdown = new Option<string?>("--markdown") { Description = "also write the table as Markdown to this file" };
        var command = new Command("bench", "Time each component of a random-weight model of a known architecture (pictures meaningless; time and memory real).")
        {
            arch, res, runs, warmup, compression, decompress, dir, threads, gemm, json, markdown,
        };
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
                Compression = result.GetValue(compression),
                Decompression = mode,
                Directory = result.GetValue(dir) ?? BenchmarkOptions.DefaultDirectory,
                IntraOpThreads = result.GetValue(threads),
                GemmSize = result.GetValue(gemm),
                Progress = m => Console.Error.WriteLine(m),
            }, cancellation);
            Console.Out.Write(result.GetValue(json) ? report.ToJson() + Environment.NewLine : report.ToTable());
            if (result.GetValue(markdown) is { } file) File.WriteAllText(file, report.ToMarkdown());
            return 0;
        })));
        return command;
    }
}
