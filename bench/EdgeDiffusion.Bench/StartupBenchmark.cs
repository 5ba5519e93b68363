using System.Diagnostics;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Bench;

/// <summary>
/// Session creation, first-run and steady-state time and peak RSS of one component (default: the sd15 UNet at 64×64
/// latents, batch 2), plain or through the session cache. Run each mode in its own process so peak RSS is its own.
/// </summary>
public static class StartupBenchmark
{
    public static void Run(string workDir, string arch, string component, string mode, string cacheDir, int runs, int latent, int batch, bool fixedShapes, bool freshInputs, bool arena = true, bool? memoryPattern = null,
        string? modelDir = null, DecompressionMode decompression = DecompressionMode.Jit)
    {
        string folder = modelDir ?? Path.Combine(workDir, arch);
        if (modelDir is null && !File.Exists(Path.Combine(folder, "unet", "model.onnx")))
            StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Preset(arch), folder, 1);
        string model = Path.Combine(folder, component, "model.onnx");
        // plain: ONNX Runtime's own defaults (memory pattern on), as plain C# use gets them; ours: EdgeDiffusion's settings without the cache.
        var cache = mode is "plain" or "ours" ? null : new SessionCache(cacheDir, m => Console.WriteLine("warning: " + m));
        bool pattern = memoryPattern ?? mode == "plain";
        if (mode == "cache-cold" && Directory.Exists(cacheDir)) Directory.Delete(cacheDir, recursive: true);
        var settings = SessionSettings.Default with
        {
            Cache = cache,
            CpuMemoryArena = arena,
            MemoryPattern = pattern,
            Decompression = decompression,
            ProfilePrefix = Environment.GetEnvironmentVariable("EDGEDIFF_PROFILE"),
            FreeDimensions = fixedShapes ? Pipelines.UNetShapes.FreeDimensions(model, batch, latent, latent) : new Dictionary<string, long>(),
        };

        long before = ProcessMemory.CurrentRssBytes();
        var create = Stopwatch.StartNew();
        using var session = SessionFactory.Create(model, settings);
        create.Stop();
        string outcome = cache?.Outcomes.Values.Single().ToString() ?? "no cache";
        long afterCreate = ProcessMemory.CurrentRssBytes();

        var hiddenWidth = session.InputMetadata["encoder_hidden_states"].Dimensions[2];
        var sample = new float[batch * 4 * latent * latent];
        var hidden = new float[batch * 77 * hiddenWidth];
        var rng = new Random(1);
        for (int i = 0; i < sample.Length; i++) sample[i] = (float)rng.NextDouble() * 2 - 1;
        for (int i = 0; i < hidden.Length; i++) hidden[i] = (float)rng.NextDouble() * 2 - 1;
        using var runOptions = new RunOptions();
        var times = new List<double>();
        OrtValue[]? values = null;
        for (int r = 0; r < runs; r++)
        {
            // --fresh-inputs: new input/output OrtValues for each run, as a pipeline makes per generation.
            if (values is null || freshInputs)
            {
                if (values is not null) foreach (var v in values) v.Dispose();
                values =
                [
                    OrtValue.CreateTensorValueFromMemory((float[])sample.Clone(), [batch, 4, latent, latent]),
                    OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(500L, batch).ToArray(), [batch]),
                    OrtValue.CreateTensorValueFromMemory((float[])hidden.Clone(), [batch, 77, hiddenWidth]),
                    OrtValue.CreateTensorValueFromMemory(new float[sample.Length], [batch, 4, latent, latent]),
                ];
            }
            var sw = Stopwatch.StartNew();
            session.Run(runOptions, ["sample", "timestep", "encoder_hidden_states"], values[..3], ["out_sample"], values[3..]);
            times.Add(sw.Elapsed.TotalSeconds);
        }
        foreach (var v in values!) v.Dispose();
        double steady = times.Skip(Math.Min(2, times.Count - 1)).Order().ElementAt((times.Count - Math.Min(2, times.Count - 1)) / 2);
        Console.WriteLine(FormattableString.Invariant(
            $"{(modelDir ?? arch)} {component} [{mode}, decompress {decompression.ToString().ToLowerInvariant()}{(fixedShapes ? ", fixed shapes" : "")}{(freshInputs ? ", fresh inputs" : "")}{(arena ? "" : ", no arena")}{(pattern ? ", memory pattern" : ", no memory pattern")}, {outcome}]: session {create.Elapsed.TotalSeconds:0.0} s, runs {string.Join(" ", times.Select(x => x.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)))} s; first/steady {times[0] / steady:0.00}x (steady = median after 2), RSS after session {afterCreate / 1048576.0:0} MiB (+{(afterCreate - before) / 1048576.0:0}), peak {ProcessMemory.PeakRssBytes() / 1048576.0:0} MiB, weights on disk {WeightsOnDisk(model) / 1048576.0:0} MiB"));
    }

    private static long WeightsOnDisk(string model) => Directory.EnumerateFiles(Path.GetDirectoryName(model)!).Where(f => !f.EndsWith(".json", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length);
}
