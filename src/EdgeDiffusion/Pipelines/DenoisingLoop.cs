using System.Diagnostics;
using System.Runtime.CompilerServices;
using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Pipelines;

/// <summary>What one run of the denoising loop took: its wall time, the part inside the model, the model calls and steps.</summary>
public readonly record struct LoopTimings(TimeSpan Loop, TimeSpan Model, int Calls, int Steps)
{
    /// <summary>The loop's own work around the model: scheduler steps, guidance, copies.</summary>
    public TimeSpan Overhead => Loop - Model;
}

/// <summary>
/// A predictor whose work depends on where in the schedule a step is (a ControlNet's guidance start/end): told before
/// each step its index among the steps this loop runs (from 0; img2img's skipped steps do not count, as in diffusers).
/// </summary>
public interface IStepAwarePredictor
{
    void BeginStep(int index, int count);
}

/// <summary>
/// The denoising loop every pipeline shares (SD's UNet, Stable Cascade's prior and decoder): from step <c>start</c> to the
/// end, feed the scaled latents (twice, unconditional rows first, when guiding), combine with classifier-free guidance
/// ε = ε_uncond + g · (ε_cond − ε_uncond) (diffusers' lerp for Cascade, the same), step the scheduler, report progress and
/// honour cancellation between steps. Buffers are made once; a step allocates nothing.
/// </summary>
public static class DenoisingLoop
{
    /// <param name="latents">The <paramref name="images"/> samples, one after another, advanced in place.</param>
    /// <param name="guidance">Classifier-free guidance scale; at or below 1 the predictor gets one row per image.</param>
    public static LoopTimings Run(IDiffusionScheduler scheduler, INoisePredictor predictor, Span<float> latents, int images, double guidance,
        int start, INoiseSource noise, Action<GenerationProgress>? progress, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(predictor);
        if (images < 1 || latents.Length % images != 0) throw new ArgumentException($"{latents.Length} latent values do not split into {images} images");
        bool guided = guidance > 1;
        int size = latents.Length, halves = guided ? 2 : 1;
        var modelInput = new float[halves * size];
        var prediction = new float[halves * size];
        var guidedPrediction = guided ? new float[size] : prediction;
        float g = (float)guidance;
        var modelBefore = predictor.ModelTime;
        int callsBefore = predictor.ModelCalls;
        var loop = Stopwatch.StartNew();
        int count = scheduler.Timesteps.Count, steps = Math.Max(count - start, 0);
        var stepAware = predictor as IStepAwarePredictor;
        for (int step = start; step < count; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            stepAware?.BeginStep(step - start, steps);
            float scale = scheduler.ScaleModelInputFactor(step);
            for (int half = 0; half < halves; half++) Scaled(latents, scale, modelInput.AsSpan(half * size, size));
            predictor.Predict(modelInput, scheduler.Timesteps[step], prediction);
            if (guided) Guide(prediction.AsSpan(0, size), prediction.AsSpan(size, size), g, guidedPrediction);
            scheduler.Step(guided ? guidedPrediction : prediction.AsSpan(0, size), step, latents, noise);
            int done = step - start + 1;
            progress?.Invoke(new GenerationProgress(done, steps, loop.Elapsed, done / loop.Elapsed.TotalSeconds));
        }
        return new LoopTimings(loop.Elapsed, predictor.ModelTime - modelBefore, predictor.ModelCalls - callsBefore, steps);
    }

    // The per-step loops run a few dozen times per picture: compiled optimized at first use rather than tier-0 first.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scaled(ReadOnlySpan<float> source, float scale, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = source[i] * scale;
    }

    /// <summary>Classifier-free guidance: ε = ε_uncond + g · (ε_cond − ε_uncond).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Guide(ReadOnlySpan<float> uncond, ReadOnlySpan<float> cond, float g, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = uncond[i] + g * (cond[i] - uncond[i]);
    }
}
