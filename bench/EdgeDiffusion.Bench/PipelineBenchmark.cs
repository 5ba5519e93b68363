using System.Diagnostics;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Bench;

/// <summary>
/// The pipeline's own cost per denoising step (scheduler, guidance combine, copies) against the UNet's, managed bytes
/// allocated per step, and the UNet step time, on a random-weight architecture folder (written once under the work dir).
/// </summary>
public static class PipelineBenchmark
{
    public static void Run(string workDir, string arch, int size, int steps, int warmup, string scheduler, double guidance, string? model = null)
    {
        string folder = model ?? Path.Combine(workDir, arch);
        if (model is not null) arch = Path.GetFileName(Path.GetFullPath(model));
        else if (!File.Exists(Path.Combine(folder, "unet", "model.onnx")))
        {
            var sw = Stopwatch.StartNew();
            StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Preset(arch), folder, 1);
            Console.WriteLine($"wrote {folder} in {sw.Elapsed.TotalSeconds:0.0} s");
        }
        var load = Stopwatch.StartNew();
        using var pipeline = StableDiffusionPipeline.Load(folder);
        Console.WriteLine($"{arch}: sessions created in {load.Elapsed.TotalSeconds:0.0} s ({string.Join(", ", pipeline.LoadTimes.Select(p => $"{p.Key} {p.Value.TotalSeconds:0.0} s"))})");
        var request = new GenerationRequest { Prompt = "a red circle on a blue background", Steps = warmup, Guidance = guidance, Scheduler = scheduler, Width = size, Height = size, Seed = 1 };
        if (warmup > 0)
        {
            var w = pipeline.Generate(request);
            Console.WriteLine($"warm-up: {warmup} steps, UNet {w.Timings.Denoiser.TotalSeconds / w.Timings.DenoiserCalls:0.000} s/call");
        }

        var allocatedAtStep = new long[steps + 1];
        var stepEnds = new double[steps + 1];
        var result = pipeline.Generate(request with { Steps = steps }, p =>
        {
            allocatedAtStep[p.Step] = GC.GetAllocatedBytesForCurrentThread();
            stepEnds[p.Step] = p.Elapsed.TotalSeconds;
        });
        var stepTimes = Enumerable.Range(1, steps).Select(i => stepEnds[i] - stepEnds[i - 1]).ToArray();
        var t = result.Timings;
        // Bytes between the end of step 1 and the end of the last step: what the loop allocates once it runs.
        double bytesPerStep = steps > 1 ? (allocatedAtStep[steps] - allocatedAtStep[1]) / (double)(steps - 1) : double.NaN;
        double unetPerStep = t.Denoiser.TotalSeconds / t.Steps, overheadPerStep = t.PipelineOverhead.TotalSeconds / t.Steps;
        Console.WriteLine($"{arch} {size}x{size}, latents {size / 8}x{size / 8}, guidance {guidance} ({t.DenoiserCalls / t.Steps} UNet call(s)/step, batch {(guidance > 1 ? 2 : 1)}), {steps} steps {result.Scheduler}:");
        Console.WriteLine($"  UNet step {unetPerStep * 1000:0.00} ms, pipeline's own work {overheadPerStep * 1000:0.000} ms/step = {100 * overheadPerStep / (unetPerStep + overheadPerStep):0.000} % of the step");
        Console.WriteLine($"  managed allocation in the loop: {bytesPerStep:0} bytes/step");
        var sorted = stepTimes.Order().ToArray();
        Console.WriteLine($"  step wall times: {string.Join(" ", stepTimes.Select(x => (x * 1000).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)))} ms; median {sorted[sorted.Length / 2] * 1000:0.0} ms, min {sorted[0] * 1000:0.0} ms");
        Console.WriteLine($"  text encoder {t.TextEncoder.TotalSeconds * 1000:0.0} ms, vae decoder {t.Decoder.TotalSeconds * 1000:0.0} ms, total {t.Total.TotalSeconds:0.00} s, {t.StepsPerSecond:0.00} it/s");
        Console.WriteLine($"  peak RSS {ProcessMemory.PeakRssBytes() / (double)(1L << 20):0} MiB");
    }
}
