using EdgeDiffusion.Compression;
using EdgeDiffusion.Pipelines;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// Runs a component (or a whole generation) with ONNX Runtime's profiler on and turns the trace into a
/// <see cref="ProfileReport"/>. The first run is a warm-up and is left out of the figures.
/// </summary>
public static class ModelProfiler
{
    /// <summary>The .onnx file a profile target names: a file itself, or a folder's component (unet by default).</summary>
    public static string ResolveComponent(string target, string? component)
    {
        if (File.Exists(target))
        {
            if (component is not null) throw new InvalidArgumentException("--component", "only applies to a model folder; the target is already one .onnx file");
            return target;
        }
        if (!Directory.Exists(target)) throw new InvalidArgumentException("model", $"{target} is neither a .onnx file nor a model folder");
        return ModelFolder.Open(target).RequireComponent(component ?? "unet");
    }

    /// <summary>
    /// Profiles one component on seeded synthetic inputs (<see cref="CalibrationInputs"/>): symbolic spatial sizes come
    /// from the folder's unet/config.json sample_size (latents; × 8 for the VAE encoder's pixels), else 64.
    /// </summary>
    public static ProfileResult ProfileComponent(string modelPath, int runs, SessionSettings settings, string? traceDirectory = null, ulong seed = 0)
    {
        if (runs < 1) throw new InvalidArgumentException("--runs", $"{runs}; give at least 1 measured run");
        string component = SessionFactory.ComponentName(modelPath);
        int spatial = SpatialSize(modelPath);
        using var model = Onnx.OnnxModel.Load(modelPath);
        return WithTraceFolder(traceDirectory, prefix =>
        {
            string trace;
            using (var inputs = CalibrationInputs.For(model.Graph, 1, spatial, seed))
            using (var session = SessionFactory.Create(modelPath, settings with { ProfilePrefix = prefix }))
            using (var runOptions = new RunOptions())
            {
                var sample = inputs.Samples[0];
                var names = sample.Select(s => s.Name).ToArray();
                var values = sample.Select(s => s.Value).ToArray();
                for (int i = 0; i < runs + 1; i++)
                {
                    using var outputs = session.Run(runOptions, names, values, session.OutputNames);
                }
                trace = session.EndProfiling();
            }
            var report = ProfileReport.From(ProfileTrace.Load(trace), skipRuns: 1, component, modelPath, UnitOf(settings));
            return (new ProfileResult(modelPath, "component", settings.Execution.Signature, runs, [report], []), [trace]);
        });
    }

    /// <summary>
    /// Profiles whole generations through <see cref="StableDiffusionPipeline"/>: one warm-up generation, then
    /// <paramref name="runs"/> measured ones; each component gets its own trace and report (its first generation's
    /// calls skipped).
    /// </summary>
    public static ProfileResult ProfileGeneration(string folder, GenerationRequest request, int runs, SessionSettings settings, string? traceDirectory = null)
    {
        if (runs < 1) throw new InvalidArgumentException("--runs", $"{runs}; give at least 1 measured generation");
        request.Validate();
        return ProfileGenerations(folder, runs, settings, traceDirectory, profiled =>
        {
            using var pipeline = StableDiffusionPipeline.Load(folder, profiled, lowMemory: false, GenerationPlan.For(request, warmUp: false, StableDiffusionPipeline.ConfiguredGuidance(folder)));
            for (int i = 0; i < runs + 1; i++) pipeline.Generate(request);
        });
    }

    /// <summary>Profiles whole Stable Cascade generations (text encoder, prior, decoder, Stage A) as <see cref="ProfileGeneration"/> does for SD.</summary>
    public static ProfileResult ProfileCascadeGeneration(string folder, CascadeRequest request, int runs, SessionSettings settings, string? traceDirectory = null)
    {
        if (runs < 1) throw new InvalidArgumentException("--runs", $"{runs}; give at least 1 measured generation");
        request.Validate();
        var layout = CascadeFolder.Open(folder);
        return ProfileGenerations(folder, runs, settings, traceDirectory, profiled =>
        {
            using var pipeline = StableCascadePipeline.Load(layout, profiled);
            for (int i = 0; i < runs + 1; i++) pipeline.Generate(request);
        });
    }

    /// <summary>Runs <paramref name="generate"/> (one warm-up and <paramref name="runs"/> measured generations) with profiling on, then reports each component's trace.</summary>
    private static ProfileResult ProfileGenerations(string folder, int runs, SessionSettings settings, string? traceDirectory, Action<SessionSettings> generate) =>
        WithTraceFolder(traceDirectory, prefix =>
        {
            string dir = Path.GetDirectoryName(prefix)!, stem = Path.GetFileName(prefix) + "_";
            var before = Directory.EnumerateFiles(dir, stem + "*.json").ToHashSet(StringComparer.Ordinal); // a kept-traces folder may hold older ones
            generate(settings with { ProfilePrefix = prefix }); // ONNX Runtime writes each session's trace when the session is disposed
            var traces = Directory.EnumerateFiles(dir, stem + "*.json").Where(t => !before.Contains(t)).Order(StringComparer.Ordinal).ToList();
            var model = ModelFolder.Open(folder);
            var reports = new List<ProfileReport>();
            foreach (var (name, path) in model.Components)
            {
                string? trace = traces.FirstOrDefault(t => Path.GetFileName(t).StartsWith(stem + SessionFactory.ComponentName(path) + "_", StringComparison.Ordinal));
                if (trace is null) continue; // a component this generation did not load (vae_encoder for txt2img, a duplicate text encoder)
                var parsed = ProfileTrace.Load(trace);
                if (parsed.Runs == 0) continue;
                reports.Add(ProfileReport.From(parsed, skipRuns: parsed.Runs / (runs + 1), name, path, UnitOf(settings)));
            }
            return (new ProfileResult(folder, "generation", settings.Execution.Signature, runs, reports, []), traces);
        });

    private static Func<string, ComputeUnit> UnitOf(SessionSettings settings) =>
        provider => ExecutionProviders.ComputeUnitOf(provider, settings.Execution.OptionsOf(provider));

    private static int SpatialSize(string modelPath)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        string component = Path.GetFileName(dir);
        int? latent = ComponentConfig.SampleSize(dir) ?? ComponentConfig.SampleSize(Path.Combine(Path.GetDirectoryName(dir) ?? dir, "unet"));
        if (latent is not { } l) return 64;
        return component == "vae_encoder" ? l * 8 : l;
    }

    /// <summary>
    /// Traces go to <paramref name="keepIn"/> when given (kept, their paths reported), else to a private temporary
    /// folder deleted afterwards.
    /// </summary>
    private static ProfileResult WithTraceFolder(string? keepIn, Func<string, (ProfileResult Result, IReadOnlyList<string> Traces)> body)
    {
        string dir = keepIn is null ? Path.Combine(Path.GetTempPath(), $"edgediff-profile-{Environment.ProcessId}-{Guid.NewGuid():N}") : Path.GetFullPath(keepIn);
        Directory.CreateDirectory(dir);
        try
        {
            var (result, traces) = body(Path.Combine(dir, "edgediff_profile"));
            return keepIn is null ? result : result with { Traces = traces };
        }
        finally
        {
            if (keepIn is null)
            {
                try { Directory.Delete(dir, recursive: true); }
                catch (IOException) { }
            }
        }
    }
}
