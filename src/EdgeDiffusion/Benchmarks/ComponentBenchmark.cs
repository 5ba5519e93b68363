using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Benchmarks;

/// <summary>What <see cref="ComponentBenchmark.Run"/> measures and where it keeps its random-weight model folders.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>tiny, sd15, sd21, sd-turbo, cascade-tiny or cascade-lite.</summary>
    public required string Arch { get; init; }

    /// <summary>Image side in pixels; null takes the architecture's own (512 for sd15).</summary>
    public int? Resolution { get; init; }

    public int Runs { get; init; } = 3;

    public int Warmup { get; init; } = 1;

    /// <summary>METHOD:BITS/DTYPE (palettize:6, linear:int8, linear:int4, prune:0.5); null benchmarks the float32 folder.</summary>
    public string? Compression { get; init; }

    public DecompressionMode Decompression { get; init; } = DecompressionMode.Jit;

    /// <summary>Where model folders are built once and reused (one subfolder per architecture and compression).</summary>
    public string Directory { get; init; } = DefaultDirectory;

    public int IntraOpThreads { get; init; }

    /// <summary>Side of the square float32 MatMul that measures this machine's peak; 0 skips the probe.</summary>
    public int GemmSize { get; init; } = 2048;

    public Action<string>? Progress { get; init; }

    /// <summary>~/.cache/edgediffusion/bench.</summary>
    public static string DefaultDirectory =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "edgediffusion", "bench");
}

/// <summary>One component's figures. Latencies in milliseconds; peak RSS null where /proc is not available.</summary>
public sealed record ComponentResult(
    string Name, string Role, string ModelPath, long DiskBytes, IReadOnlyList<string> InputShapes, int Batch, double SessionSeconds,
    IReadOnlyList<double> LatenciesMs, double MedianMs, double MinMs, double MaxMs, double? IterationsPerSecond, long? PeakRssBytes)
{
    /// <summary>Floating-point operations per run are not counted (they would need shape inference through every node).</summary>
    public double? Gflop => null;
}

/// <summary>A whole benchmark: the model folder used, the machine's measured float32 GEMM peak, and each component's figures.</summary>
public sealed record BenchmarkReport(
    string Arch, int Resolution, string? Compression, string Decompression, string ModelFolder, int Runs, int Warmup, int GemmSize,
    double? PeakGflops, IReadOnlyList<ComponentResult> Components)
{
    public const string Note = "random weights: pictures would be meaningless; time and memory are real";

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
                ["session_seconds"] = c.SessionSeconds,
                ["latencies_ms"] = new JsonArray([.. c.LatenciesMs.Select(l => (JsonNode)JsonValue.Create(l))]),
                ["median_ms"] = c.MedianMs,
                ["min_ms"] = c.MinMs,
                ["max_ms"] = c.MaxMs,
                ["iterations_per_second"] = c.IterationsPerSecond,
                ["peak_rss_bytes"] = c.PeakRssBytes,
                ["gflop"] = c.Gflop,
                ["achieved_gflops"] = null,
            });
        var root = new JsonObject
        {
            ["note"] = Note,
            ["arch"] = Arch,
            ["resolution"] = Resolution,
            ["compression"] = Compression,
            ["decompression"] = Decompression,
            ["model_folder"] = ModelFolder,
            ["runs"] = Runs,
            ["warmup"] = Warmup,
            ["gemm_probe"] = new JsonObject { ["size"] = GemmSize, ["peak_gflops"] = PeakGflops },
            ["flops_note"] = "per-component FLOPs are not counted, so achieved GFLOP/s is null (n/a)",
            ["components"] = components,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public string ToTable() => Render(markdown: false);

    public string ToMarkdown() => Render(markdown: true);

    private string Render(bool markdown)
    {
        var sb = new StringBuilder();
        string title = $"edgediff bench {Arch} at {Resolution}² ({Compression ?? "float32"}{(Compression is null ? "" : ", decompress " + Decompression)}), {Warmup} warm-up + {Runs} runs";
        sb.AppendLine(markdown ? "## " + title : title);
        sb.AppendLine(markdown ? $"\n*{Note}.*\n" : Note);
        string[] header = ["component", "inputs", "disk", "session s", "median ms", "min ms", "max ms", "it/s", "peak RSS", "GFLOP/s"];
        var rows = Components.Select(c => new[]
        {
            c.Name, string.Join(" ", c.InputShapes), Bytes(c.DiskBytes), F(c.SessionSeconds, "0.00"), F(c.MedianMs, "0.0"), F(c.MinMs, "0.0"), F(c.MaxMs, "0.0"),
            c.IterationsPerSecond is double it ? F(it, "0.00") : "", c.PeakRssBytes is long rss ? Bytes(rss) : "n/a", "n/a",
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
        sb.AppendLine(PeakGflops is double peak
            ? $"float32 GEMM peak of this machine ({GemmSize}² MatMul in ONNX Runtime): {F(peak, "0.0")} GFLOP/s; per-component GFLOP/s n/a (FLOPs not counted)"
            : "float32 GEMM peak: not measured; per-component GFLOP/s n/a (FLOPs not counted)");
        sb.AppendLine($"it/s: UNet (or prior/decoder) calls per second at the batch shown (2 = classifier-free guidance); peak RSS: VmHWM reset before each component");
        sb.AppendLine($"model folder: {ModelFolder}");
        return sb.ToString();
    }

    internal static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    internal static string Bytes(long b) => b >= 1L << 30 ? F(b / (double)(1L << 30), "0.00") + " GiB"
        : b >= 1L << 20 ? F(b / (double)(1L << 20), "0.0") + " MiB" : F(b / 1024.0, "0.0") + " KiB";
}

/// <summary>
/// Times each component of a random-weight model folder of a known architecture (built once under
/// <see cref="BenchmarkOptions.Directory"/>, optionally compressed once into a sibling folder) on seeded inputs sized for
/// the resolution, with peak RSS per component and this machine's float32 GEMM peak for scale.
/// </summary>
public static class ComponentBenchmark
{
    private sealed record Plan(string Name, string Role, int Batch, int Spatial);

    public static BenchmarkReport Run(BenchmarkOptions options, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Runs < 1) throw new InvalidArgumentException("--runs", $"{options.Runs} must be at least 1");
        if (options.Warmup < 0) throw new InvalidArgumentException("--warmup", $"{options.Warmup} must be 0 or more");
        var spec = options.Compression is null ? null : ParseCompression(options.Compression);
        var (folderName, resolution, plans, write) = Resolve(options.Arch, options.Resolution);

        string source = Path.Combine(options.Directory, folderName);
        if (!File.Exists(Path.Combine(source, ModelFolderCompressor.ModelIndexFileName)))
        {
            options.Progress?.Invoke($"building random-weight {folderName} in {source}");
            write(source);
        }
        string folder = source;
        if (spec is not null)
        {
            folder = source + "-" + Slug(options.Compression!);
            if (!File.Exists(Path.Combine(folder, ModelFolderCompressor.ModelIndexFileName)))
            {
                options.Progress?.Invoke($"compressing {source} ({spec}) into {folder}");
                var encoder = WeightEncoders.Create(spec);
                ModelFolderCompressor.Compress(source, folder, (_, _) => encoder, new FolderCompressionOptions { Overwrite = true }, null, cancellation);
            }
        }

        double? peak = options.GemmSize > 0 ? GemmPeakGflops(options.GemmSize, options.IntraOpThreads) : null;
        var settings = new SessionSettings { IntraOpThreads = options.IntraOpThreads, Decompression = options.Decompression };
        var results = new List<ComponentResult>();
        foreach (var plan in plans)
        {
            cancellation.ThrowIfCancellationRequested();
            options.Progress?.Invoke($"{plan.Name}: batch {plan.Batch}, spatial {plan.Spatial}");
            results.Add(Measure(Path.Combine(folder, plan.Name, ModelFolderCompressor.ModelFileName), plan, settings, options.Warmup, options.Runs, cancellation));
        }
        return new BenchmarkReport(folderName, resolution, options.Compression, options.Decompression.ToString().ToLowerInvariant(), Path.GetFullPath(folder),
            options.Runs, options.Warmup, options.GemmSize, peak, results);
    }

    /// <summary>METHOD:BITS/DTYPE: palettize:6, linear:int8, linear:int4, prune:0.5; a bad one names --compression.</summary>
    public static CompressionSpec ParseCompression(string text)
    {
        var parts = text.Split(':', 2, StringSplitOptions.TrimEntries);
        string method = parts[0].ToLowerInvariant();
        string? arg = parts.Length > 1 ? parts[1].ToLowerInvariant() : null;
        try
        {
            var spec = method switch
            {
                "palettize" => new CompressionSpec { Method = CompressionMethod.Palettize, Bits = arg is null ? 6 : int.TryParse(arg, CultureInfo.InvariantCulture, out int b) ? b : throw Bad(text, $"'{arg}' is not a number of bits") },
                "linear" => new CompressionSpec
                {
                    Method = CompressionMethod.Linear,
                    Dtype = (arg ?? "int8") switch
                    {
                        "int8" => QuantizedType.Int8, "uint8" => QuantizedType.UInt8, "int4" => QuantizedType.Int4, "uint4" => QuantizedType.UInt4,
                        _ => throw Bad(text, $"'{arg}' is not a type; use int8, uint8, int4 or uint4"),
                    },
                    Granularity = arg is "int4" or "uint4" ? QuantizationGranularity.PerBlock : QuantizationGranularity.PerChannel,
                    BlockSize = arg is "int4" or "uint4" ? 32 : 0,
                },
                "prune" => new CompressionSpec { Method = CompressionMethod.Prune, Sparsity = arg is null ? 0.5 : double.TryParse(arg, CultureInfo.InvariantCulture, out double s) ? s : throw Bad(text, $"'{arg}' is not a sparsity") },
                _ => throw Bad(text, $"'{parts[0]}' is not a method; write palettize:6, linear:int8, linear:int4 or prune:0.5"),
            };
            return spec.Validate();
        }
        catch (InvalidArgumentException e) when (e.Argument != "--compression")
        {
            throw Bad(text, e.Message);
        }
    }

    private static InvalidArgumentException Bad(string text, string problem) => new("--compression", $"'{text}': {problem}");

    private static string Slug(string text) => new([.. text.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) || c == '.' ? c : '-')]);

    private static (string Name, int Resolution, Plan[] Plans, Action<string> Write) Resolve(string arch, int? resolution)
    {
        string known = string.Join(", ", StableDiffusionConfig.Presets.Select(p => p.Name).Concat(StableCascadeConfig.Presets.Select(p => p.Name)));
        if (StableDiffusionConfig.Presets.FirstOrDefault(p => string.Equals(p.Name, arch, StringComparison.OrdinalIgnoreCase)) is { } sd)
        {
            int res = resolution ?? sd.ImageSize;
            int factor = sd.Vae.DownscaleFactor;
            if (res < factor || res % factor != 0) throw new InvalidArgumentException("--res", $"{res} must be a positive multiple of {factor} (the VAE's factor)");
            int latent = res / factor;
            return (sd.Name, res,
            [
                new(StableDiffusionArchitecture.TextEncoder, "text encoder", 1, latent),
                new(StableDiffusionArchitecture.UNet, "unet (one denoising step, CFG)", 2, latent),
                new(StableDiffusionArchitecture.VaeDecoder, "vae decoder", 1, latent),
            ], dir => StableDiffusionArchitecture.WriteFolder(sd, dir, 0));
        }
        if (StableCascadeConfig.Presets.FirstOrDefault(p => string.Equals(p.Name, arch, StringComparison.OrdinalIgnoreCase)) is { } cascade)
        {
            int res = resolution ?? cascade.ImageSize;
            var sized = cascade with { ImageSize = res };
            try { sized.Validate(); }
            catch (InvalidArgumentException e) { throw new InvalidArgumentException("--res", e.Message); }
            // Stage C (prior) runs at ceil(res / 42.67) with CFG (batch 2); Stage B (decoder, guidance 0 by default) and
            // Stage A's decoder at res / 4, batch 1. The decoder's effnet input gets the same side as its sample.
            return (cascade.Name, res,
            [
                new(StableCascadeArchitecture.TextEncoder, "text encoder", 1, 1),
                new(StableCascadeArchitecture.Prior, "prior (stage C step, CFG)", 2, sized.PriorLatentSize),
                new(StableCascadeArchitecture.Decoder, "decoder (stage B step)", 1, sized.DecoderLatentSize),
                new(StableCascadeArchitecture.VaeDecoder, "vqgan decoder (stage A)", 1, sized.DecoderLatentSize),
            ], dir => StableCascadeArchitecture.WriteFolder(cascade, dir, 0));
        }
        throw new InvalidArgumentException("--arch", $"'{arch}' is not known; use one of {known}");
    }

    private static ComponentResult Measure(string modelPath, Plan plan, SessionSettings settings, int warmup, int runs, CancellationToken cancellation)
    {
        long disk = DiskBytes(modelPath);
        CalibrationInputs inputs;
        using (var model = OnnxModel.Load(modelPath))
            inputs = CalibrationInputs.For(model.Graph, 1, plan.Spatial, seed: 0, batch: plan.Batch);
        using (inputs)
        {
            var sample = inputs.Samples[0];
            var shapes = sample.Select(s => $"{s.Name}[{string.Join('x', s.Value.GetTensorTypeAndShape().Shape)}]").ToList();
            GC.Collect();
            bool peakReset = ResetPeakRss();
            var clock = Stopwatch.StartNew();
            using var session = SessionFactory.Create(modelPath, settings);
            double sessionSeconds = clock.Elapsed.TotalSeconds;
            var names = sample.Select(s => s.Name).ToArray();
            var values = sample.Select(s => s.Value).ToArray();
            var outputs = session.OutputNames.ToArray();
            using var runOptions = new RunOptions();
            var latencies = new List<double>();
            for (int i = 0; i < warmup + runs; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                clock.Restart();
                using (session.Run(runOptions, names, values, outputs)) { }
                if (i >= warmup) latencies.Add(clock.Elapsed.TotalMilliseconds);
            }
            long? rss = peakReset ? PeakRssBytes() : null;
            var sorted = latencies.Order().ToArray();
            double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            bool denoiser = plan.Role.Contains("step", StringComparison.Ordinal);
            return new ComponentResult(plan.Name, plan.Role, modelPath, disk, shapes, plan.Batch, sessionSeconds, latencies, median, sorted[0], sorted[^1],
                denoiser ? 1000 / median : null, rss);
        }
    }

    /// <summary>Bytes of the component's model files (model.onnx and its external data, model.onnx_data …).</summary>
    public static long DiskBytes(string modelPath) =>
        new DirectoryInfo(Path.GetDirectoryName(Path.GetFullPath(modelPath))!).EnumerateFiles(Path.GetFileName(modelPath) + "*").Sum(f => f.Length);

    /// <summary>Best-of-5 float32 GFLOP/s of an n×n×n MatMul in ONNX Runtime (2n³ operations per run), after one warm-up.</summary>
    public static double GemmPeakGflops(int n, int threads = 0)
    {
        var graph = new GraphProto { Name = "gemm_probe" };
        foreach (var name in new[] { "A", "B" }) graph.Input.Add(Square(name, n));
        graph.Output.Add(Square("C", n));
        graph.Node.Add(new NodeProto { OpType = "MatMul", Name = "matmul", Input = { "A", "B" }, Output = { "C" } });
        var proto = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "edgediffusion-bench" };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        byte[] bytes;
        using (var stream = new MemoryStream())
        {
            Google.Protobuf.MessageExtensions.WriteTo(proto, stream);
            bytes = stream.ToArray();
        }
        using var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = new InferenceSession(bytes, options);
        var random = new Schedulers.GaussianNoise(7);
        var a = new float[(long)n * n];
        var b = new float[(long)n * n];
        random.Fill(a);
        random.Fill(b);
        using var va = OrtValue.CreateTensorValueFromMemory(a, [n, n]);
        using var vb = OrtValue.CreateTensorValueFromMemory(b, [n, n]);
        using var runOptions = new RunOptions();
        double best = double.MaxValue;
        for (int i = 0; i < 6; i++)
        {
            var clock = Stopwatch.StartNew();
            using (session.Run(runOptions, ["A", "B"], [va, vb], ["C"])) { }
            if (i > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * (double)n / best / 1e9;
    }

    private static ValueInfoProto Square(string name, int n)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = n });
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = n });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DT.Float, Shape = shape } } };
    }

    /// <summary>Resets the kernel's peak-RSS mark (Linux clear_refs 5); false where that is not possible.</summary>
    private static bool ResetPeakRss()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    private static long? PeakRssBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return null;
    }
}
