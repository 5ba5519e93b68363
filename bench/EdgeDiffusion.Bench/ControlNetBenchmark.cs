using System.Globalization;
using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.ControlNets;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Bench;

/// <summary>
/// ControlNet on a model folder: the held-out mask evaluation (<see cref="ControlNetEvaluation"/>) and the cost of a
/// denoising step with the ControlNet against the plain UNet (median over runs of model time per step, same prompt,
/// size, steps and guidance; the first run of each is a warm-up).
/// </summary>
public static class ControlNetBenchmark
{
    public static void Evaluate(string model, string controlModel, int seeds, int steps, string scheduler, double scale, string? saveDir)
    {
        string heldout = Path.Combine(controlModel, "evaluation", "heldout-masks.json");
        var set = HeldOutMaskSet.Load(heldout);
        using var pipeline = StableDiffusionPipeline.Load(model, controlNets: new ControlNetOptions([ControlNetFolder.Open(controlModel)]));
        double guidance = StableDiffusionPipeline.ConfiguredGuidance(model) ?? GenerationRequest.DefaultGuidance;
        int i = 0;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var score = ControlNetEvaluation.Run(pipeline, set, Enumerable.Range(0, seeds).Select(s => (ulong)s).ToArray(), steps, guidance, scheduler, scale,
            saveDir is null ? null : image => Imaging.PngWriter.Write(Path.Combine(saveDir, $"{i++:000}.png"), image));
        Console.WriteLine(FormattableString.Invariant($"{controlModel} on {model} ({scheduler}, {steps} steps, guidance {guidance}, control scale {scale}): {score} in {watch.Elapsed.TotalSeconds:0.0} s"));
        foreach (var miss in score.Misses.Take(20)) Console.WriteLine("  miss: " + miss);
    }

    public static void Cost(string model, string controlModel, int size, int steps, int runs, string? controlImage)
    {
        using var pipeline = StableDiffusionPipeline.Load(model, controlNets: new ControlNetOptions([ControlNetFolder.Open(controlModel)]));
        double guidance = StableDiffusionPipeline.ConfiguredGuidance(model) ?? GenerationRequest.DefaultGuidance;
        var control = controlImage is null ? new float[3 * size * size] : ControlImage.Load(controlImage, size, size);
        var plain = new GenerationRequest { Prompt = "a red circle on a blue background", Steps = steps, Guidance = guidance, Width = size, Height = size };
        var controlled = plain with { Controls = [new ControlImage(control)] };
        double PerStep(GenerationRequest request, out double controlNetShare)
        {
            var perStep = new List<double>();
            var shares = new List<double>();
            for (int r = 0; r <= runs; r++)
            {
                var t = pipeline.Generate(request).Timings;
                if (r == 0) continue; // warm-up
                perStep.Add(t.Denoiser.TotalMilliseconds / t.Steps);
                shares.Add(t.ControlNet.TotalMilliseconds / t.Steps);
            }
            controlNetShare = shares.Order().ElementAt(shares.Count / 2);
            return perStep.Order().ElementAt(perStep.Count / 2);
        }
        double a = PerStep(plain, out _), b = PerStep(controlled, out double cn);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{model} {size}x{size}, {steps} steps, guidance {guidance} (batch {(guidance > 1 ? 2 : 1)}), median of {runs} runs: plain UNet {a:0.00} ms/step, with {Path.GetFileName(Path.GetFullPath(controlModel))} {b:0.00} ms/step (ControlNet {cn:0.00} ms, residual UNet {b - cn:0.00} ms): {b / a:0.00}×"));
    }
}
