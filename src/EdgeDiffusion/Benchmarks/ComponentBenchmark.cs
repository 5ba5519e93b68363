using System.Diagnostics;
using System.Globalization;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Benchmarks;

/// <summary>
/// Times each component of a random-weight model folder of a known architecture (built once under
/// <see cref="BenchmarkOptions.Directory"/>, optionally compressed once into a sibling folder) on seeded inputs sized for
/// the resolution: latency, peak RSS, operations counted from a profiled warm-up, and this machine's float32 peak for scale.
/// </summary>
public static class ComponentBenchmark
{
    /// <summary>One component to time: its folder, batch, spatial side of its inputs and runs per picture.</summary>
    private sealed record Plan(string Name, string Role, int Batch, int Spatial, int Calls);

    public static BenchmarkReport Run(BenchmarkOptions options, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Runs < 1) throw new InvalidArgumentException("--runs", $"{options.Runs} must be at least 1");
        if (options.Warmup < 0) throw new InvalidArgumentException("--warmup", $"{options.Warmup} must be 0 or more");
        if (options.Steps is < 1) throw new InvalidArgumentException("--steps", $"{options.Steps} must be at least 1");
        if (options.DecoderSteps is < 1) throw new InvalidArgumentException("--decoder-steps", $"{options.DecoderSteps} must be at least 1");
        bool w8a8 = string.Equals(options.Compression, W8A8Form, StringComparison.OrdinalIgnoreCase);
        var spec = options.Compression is null || w8a8 ? null : ParseCompression(options.Compression);
        var (folderName, resolution, allPlans, write) = Resolve(options.Arch, options.Resolution, options.Steps, options.DecoderSteps);
        var unknown = options.Components.Where(c => !allPlans.Any(p => p.Name == c)).ToList();
        if (unknown.Count > 0)
            throw new InvalidArgumentException("--component", $"'{unknown[0]}' is not a component of {folderName}; use {string.Join(", ", allPlans.Select(p => p.Name))}");
        var plans = options.Components.Count == 0 ? allPlans : allPlans.Where(p => options.Components.Contains(p.Name)).ToArray();

        string source = Path.Combine(options.Directory, folderName);
        if (!File.Exists(Path.Combine(source, ModelFolderCompressor.ModelIndexFileName)))
        {
            options.Progress?.Invoke($"building random-weight {folderName} in {source}");
            write(source);
        }
        string folder = source;
        if (spec is not null || w8a8)
        {
            folder = source + "-" + Slug(options.Compression!) + "-calibrated";
            if (!File.Exists(Path.Combine(folder, ModelFolderCompressor.ModelIndexFileName)))
            {
                options.Progress?.Invoke($"compressing {source} ({(spec?.ToString() ?? W8A8Form)}) into {folder}");
                // Random weights have no trajectories worth recording: the denoisers are calibrated on fixed seeded inputs
                // of their own batch at a small latent side (ranges, not shapes, are what calibration measures), as
                // compress does on a real folder, so compressed forms can run on int8 kernels (--decompress auto|int8).
                var denoisers = allPlans.Where(p => p.Role.Contains("step", StringComparison.Ordinal)).ToList();
                var samples = new List<CalibrationInputs>();
                CalibrationSet Calibration(string component, OnnxModel model)
                {
                    var plan = denoisers.First(p => p.Name == component);
                    var inputs = CalibrationInputs.For(model.Graph, 2, Math.Min(plan.Spatial, 16), seed: 0, batch: plan.Batch);
                    samples.Add(inputs);
                    return new CalibrationSet(inputs.Samples, $"2 fixed seeded inputs of batch {plan.Batch} at latent side {Math.Min(plan.Spatial, 16)}");
                }
                try
                {
                    if (spec is not null)
                    {
                        var ranges = new Dictionary<string, ActivationRanges>(StringComparer.Ordinal);
                        foreach (var plan in denoisers)
                        {
                            using var model = OnnxModel.Load(Path.Combine(source, plan.Name, ModelFolderCompressor.ModelFileName));
                            ranges[plan.Name] = W8A8Quantizer.Calibrate(model, Calibration(plan.Name, model), cancellationToken: cancellation);
                        }
                        var encoder = WeightEncoders.Create(spec);
                        ModelFolderCompressor.Compress(source, folder, (_, _) => encoder, new FolderCompressionOptions { Overwrite = true, ActivationRanges = ranges }, null, cancellation);
                    }
                    else
                        W8A8Quantizer.QuantizeFolder(source, folder, Calibration, components: [.. denoisers.Select(p => p.Name)], overwrite: true,
                            log: options.Progress is { } p ? new Progress<string>(p) : null, cancellationToken: cancellation);
                }
                finally
                {
                    foreach (var s in samples) s.Dispose();
                }
            }
        }

        var contention = CpuContention.Start();
        double? gemm = null, conv = null;
        if (options.GemmSize > 0)
        {
            options.Progress?.Invoke("measuring the float32 peak (GEMM and convolution probes)");
            gemm = PeakProbe.GemmGflops(options.GemmSize, options.IntraOpThreads);
            conv = PeakProbe.ConvGflops(threads: options.IntraOpThreads);
        }
        var settings = new SessionSettings
        {
            IntraOpThreads = options.IntraOpThreads,
            Decompression = options.Decompression,
            Attention = options.Attention,
            OptimizationLevel = options.OptimizationLevel,
            ConfigEntries = options.SessionEntries,
            Execution = options.Execution,
            SharedAllocator = options.SharedAllocator,
        };
        string described = $"{options.Execution.Signature}, {options.OptimizationLevel}, {options.Attention.ToString().ToLowerInvariant()} attention, threads {(options.IntraOpThreads == 0 ? "ORT default" : options.IntraOpThreads.ToString(CultureInfo.InvariantCulture))}"
            + (options.SharedAllocator ? ", shared allocator" : "")
            + string.Concat(options.SessionEntries.Select(e => $", {e.Key}={e.Value}"));
        var results = new List<ComponentResult>();
        foreach (var plan in plans)
        {
            cancellation.ThrowIfCancellationRequested();
            options.Progress?.Invoke($"{plan.Name}: batch {plan.Batch}, spatial {plan.Spatial}");
            results.Add(Measure(Path.Combine(folder, plan.Name, ModelFolderCompressor.ModelFileName), plan, settings, options.Warmup, options.Runs, cancellation));
        }
        double? others = contention?.OthersShare();
        if (others > BenchmarkReport.BusyMachineShare)
            options.Progress?.Invoke($"warning: other processes used {others:P0} of the CPU while this ran; the figures are lower than this machine gives when idle");
        MeasuredGeneration? generation = null;
        if (options.EndToEnd)
        {
            options.Progress?.Invoke("one whole generation through the pipeline");
            generation = allPlans.Any(p => p.Name == StableDiffusionArchitecture.UNet)
                ? MeasureGeneration(folder, resolution, allPlans.First(p => p.Name == StableDiffusionArchitecture.UNet), settings, cancellation)
                : MeasureCascadeGeneration(folder, resolution, allPlans.First(p => p.Name == StableCascadeArchitecture.Prior),
                    allPlans.First(p => p.Name == StableCascadeArchitecture.Decoder),
                    // Stage A's folder is vqgan/ in diffusers' layout and vae_decoder/ in the builders' (the same decoder).
                    allPlans.Any(p => p.Name == StableCascadeArchitecture.Vqgan) ? StableCascadeArchitecture.Vqgan : StableCascadeArchitecture.VaeDecoder,
                    settings, cancellation);
        }
        return new BenchmarkReport(folderName, resolution, options.Compression, options.Decompression.ToString().ToLowerInvariant(), Path.GetFullPath(folder),
            options.Runs, options.Warmup, options.GemmSize, gemm, conv, results, described, plans.Length == allPlans.Length, generation, others);
    }

    /// <summary>Loads the folder's pipeline and times one generation with the steps and guidance the composed figure assumes.</summary>
    private static MeasuredGeneration MeasureGeneration(string folder, int resolution, Plan unet, SessionSettings settings, CancellationToken cancellation) =>
        // Batch 2 means classifier-free guidance at SD's usual scale; batch 1 (SD-Turbo) runs without it.
        TimeOneGeneration(() => Pipelines.StableDiffusionPipeline.Load(folder, settings), StableDiffusionArchitecture.VaeDecoder, pipeline =>
        {
            var request = new Pipelines.GenerationRequest
            {
                Prompt = "a photo of a cat", Steps = unet.Calls, Guidance = unet.Batch == 2 ? Pipelines.GenerationRequest.DefaultGuidance : 0,
                Width = resolution, Height = resolution, Seed = 0,
            };
            var result = pipeline.Generate(request, cancellation: cancellation);
            return (request.Steps, result.Guidance, result);
        });

    /// <summary>Stable Cascade: one picture through the three stages with the prior and decoder steps of the composed figure (prior guided at 4, decoder unguided).</summary>
    private static MeasuredGeneration MeasureCascadeGeneration(string folder, int resolution, Plan prior, Plan decoder, string stageA, SessionSettings settings,
        CancellationToken cancellation) =>
        TimeOneGeneration(() => Pipelines.StableCascadePipeline.Load(folder, settings), stageA, pipeline =>
        {
            var request = new Pipelines.CascadeRequest
            {
                Prompt = "a photo of a cat", PriorSteps = prior.Calls, DecoderSteps = decoder.Calls, PriorGuidance = prior.Batch == 2 ? 4.0 : 0,
                DecoderGuidance = 0, Width = resolution, Height = resolution,
            };
            return (prior.Calls + decoder.Calls, request.PriorGuidance.Value, pipeline.Generate(request, cancellation: cancellation));
        });

    /// <summary>Session creation, then one generation, timed apart; the process's peak RSS over both (reset first where Linux allows).</summary>
    private static MeasuredGeneration TimeOneGeneration<TPipeline>(Func<TPipeline> load, string imageDecoder,
        Func<TPipeline, (int Steps, double Guidance, Pipelines.GenerationResult Result)> generate)
        where TPipeline : IDisposable
    {
        GC.Collect();
        bool peakReset = ResetPeakRss();
        var clock = Stopwatch.StartNew();
        using var pipeline = load();
        double loadSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var (steps, guidance, result) = generate(pipeline);
        double ms = clock.Elapsed.TotalMilliseconds;
        return new MeasuredGeneration(steps, guidance, result.Scheduler, result.Timings.DenoiserCalls, loadSeconds, ms, peakReset ? PeakRssBytes() : null)
        {
            Parts = GenerationParts(result, imageDecoder),
        };
    }

    /// <summary>The generation's time per benchmark component (the names the composed figure uses; <paramref name="imageDecoder"/>: the folder of the model that makes the pixels).</summary>
    internal static IReadOnlyList<GenerationPart> GenerationParts(Pipelines.GenerationResult result, string imageDecoder)
    {
        var t = result.Timings;
        var parts = new List<GenerationPart> { new(StableDiffusionArchitecture.TextEncoder, t.TextEncoder.TotalMilliseconds, null) };
        if (result.Stages.Count == 0)
        {
            parts.Add(new(StableDiffusionArchitecture.UNet, t.Denoiser.TotalMilliseconds, t.DenoiserCalls));
            parts.Add(new(imageDecoder, t.Decoder.TotalMilliseconds, result.Images.Count));
        }
        else
        {
            parts.AddRange(result.Stages.Select(s => new GenerationPart(s.Stage switch
            {
                "prior" => StableCascadeArchitecture.Prior,
                "decoder" => StableCascadeArchitecture.Decoder,
                _ => imageDecoder,
            }, s.Model.TotalMilliseconds, s.Calls)));
        }
        return parts;
    }

    /// <summary>The --compression value for static W8A8 (int8 weights and activations) on the denoisers.</summary>
    public const string W8A8Form = "w8a8";

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
                _ => throw Bad(text, $"'{parts[0]}' is not a method; write palettize:6, linear:int8, linear:int4, prune:0.5 or w8a8"),
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

    private static (string Name, int Resolution, Plan[] Plans, Action<string> Write) Resolve(string arch, int? resolution, int? steps, int? decoderSteps)
    {
        string known = string.Join(", ", StableDiffusionConfig.Presets.Select(p => p.Name).Concat(StableCascadeConfig.Presets.Select(p => p.Name)));
        if (StableDiffusionConfig.Presets.FirstOrDefault(p => string.Equals(p.Name, arch, StringComparison.OrdinalIgnoreCase)) is { } sd)
        {
            int res = resolution ?? sd.ImageSize;
            int factor = sd.Vae.DownscaleFactor;
            if (res < factor || res % factor != 0) throw new InvalidArgumentException("--res", $"{res} must be a positive multiple of {factor} (the VAE's factor)");
            int latent = res / factor;
            // SD-Turbo (distilled, trailing Euler) runs one step without guidance; the others 20 steps (generate's default) with it.
            bool turbo = sd.Scheduler == SchedulerKind.EulerTrailing;
            int batch = turbo ? 1 : 2;
            return (sd.Name, res,
            [
                new(StableDiffusionArchitecture.TextEncoder, "text encoder", 1, latent, batch),
                new(StableDiffusionArchitecture.UNet, turbo ? "unet (one denoising step)" : "unet (one denoising step, CFG)", batch, latent, steps ?? (turbo ? 1 : 20)),
                new(StableDiffusionArchitecture.VaeDecoder, "vae decoder", 1, latent, 1),
            ], dir => StableDiffusionArchitecture.WriteFolder(sd, dir, 0));
        }
        if (StableCascadeConfig.Presets.FirstOrDefault(p => string.Equals(p.Name, arch, StringComparison.OrdinalIgnoreCase)) is { } cascade)
        {
            int res = resolution ?? cascade.ImageSize;
            var sized = cascade with { ImageSize = res };
            try { sized.Validate(); }
            catch (InvalidArgumentException e) { throw new InvalidArgumentException("--res", e.Message); }
            // Stage C (prior) runs at ceil(res / 42.67) with CFG (batch 2), 20 steps; Stage B (decoder, guidance 0 by default)
            // 10 steps and Stage A's decoder once at res / 4, batch 1. The decoder's effnet input gets the same side as its sample.
            return (cascade.Name, res,
            [
                new(StableCascadeArchitecture.TextEncoder, "text encoder", 1, 1, 2),
                new(StableCascadeArchitecture.Prior, "prior (stage C step, CFG)", 2, sized.PriorLatentSize, steps ?? 20),
                new(StableCascadeArchitecture.Decoder, "decoder (stage B step)", 1, sized.DecoderLatentSize, decoderSteps ?? 10),
                new(StableCascadeArchitecture.VaeDecoder, "vqgan decoder (stage A)", 1, sized.DecoderLatentSize, 1),
            ], dir => StableCascadeArchitecture.WriteFolder(cascade, dir, 0));
        }
        throw new InvalidArgumentException("--arch", $"'{arch}' is not known; use one of {known}");
    }

    private static ComponentResult Measure(string modelPath, Plan plan, SessionSettings settings, int warmup, int runs, CancellationToken cancellation)
    {
        long disk = DiskBytes(modelPath);
        // The inputs need only the graph's declarations: the outline skips the weights the session is about to read anyway.
        var inputs = CalibrationInputs.For(OnnxModel.ReadGraphOutline(modelPath), 1, plan.Spatial, seed: 0, batch: plan.Batch);
        string? traceFolder = warmup > 0 ? Directory.CreateTempSubdirectory("edgediff-bench-").FullName : null;
        try
        {
            using (inputs)
            {
                var sample = inputs.Samples[0];
                var shapes = sample.Select(s => $"{s.Name}[{string.Join('x', s.Value.GetTensorTypeAndShape().Shape)}]").ToList();
                GC.Collect();
                bool peakReset = ResetPeakRss();
                var clock = Stopwatch.StartNew();
                // The first warm-up is profiled (its kernels' shapes give the operation count); profiling ends before the timed runs.
                using var session = SessionFactory.Create(modelPath, traceFolder is null ? settings : settings with { ProfilePrefix = Path.Combine(traceFolder, "bench") });
                double sessionSeconds = clock.Elapsed.TotalSeconds;
                var names = sample.Select(s => s.Name).ToArray();
                var values = sample.Select(s => s.Value).ToArray();
                var outputs = session.OutputNames.ToArray();
                using var runOptions = new RunOptions();
                var latencies = new List<double>();
                double? gflop = null;
                for (int i = 0; i < warmup + runs; i++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    clock.Restart();
                    using (session.Run(runOptions, names, values, outputs)) { }
                    if (i >= warmup) latencies.Add(clock.Elapsed.TotalMilliseconds);
                    if (i == 0 && traceFolder is not null)
                        gflop = NodeFlops.Total(ProfileTrace.Load(session.EndProfiling())) / 1e9;
                }
                long? rss = peakReset ? PeakRssBytes() : null;
                var sorted = latencies.Order().ToArray();
                double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
                bool denoiser = plan.Role.Contains("step", StringComparison.Ordinal);
                return new ComponentResult(plan.Name, plan.Role, modelPath, disk, shapes, plan.Batch, plan.Calls, sessionSeconds, latencies, median, sorted[0], sorted[^1],
                    denoiser ? 1000 / median : null, rss, gflop);
            }
        }
        finally
        {
            if (traceFolder is not null) Directory.Delete(traceFolder, recursive: true);
        }
    }

    /// <summary>Bytes of the component's model files (model.onnx and its external data, model.onnx_data …).</summary>
    public static long DiskBytes(string modelPath) =>
        new DirectoryInfo(Path.GetDirectoryName(Path.GetFullPath(modelPath))!).EnumerateFiles(Path.GetFileName(modelPath) + "*").Sum(f => f.Length);

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
