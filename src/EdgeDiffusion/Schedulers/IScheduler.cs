namespace EdgeDiffusion.Schedulers;

/// <summary>
/// A diffusion sampler as a small, pure state machine: no I/O, no model, no tensors — it works on flat float spans
/// that hold the whole batch (every operation is elementwise, so batch and layout do not matter).
/// Use: <see cref="SetTimesteps"/>; latents = N(0,1) noise × <see cref="InitNoiseSigma"/>; then for i = start..Timesteps.Count−1:
/// run the model on latents × <see cref="ScaleModelInputFactor"/>(i) at timestep <see cref="Timesteps"/>[i], and
/// <see cref="Step"/>(output, i, latents). Steps after the first must come in order (multistep solvers keep history).
/// </summary>
public interface IScheduler : IDiffusionScheduler
{
    /// <summary>The diffusers settings of the SD-family schedulers (betas, spacing, prediction type…).</summary>
    SchedulerConfig Config { get; }
}

/// <summary>
/// The state machine a denoising loop drives, whatever its noise schedule: SD's discrete schedulers (<see cref="IScheduler"/>)
/// and Stable Cascade's continuous <see cref="DdpmWuerstchenScheduler"/> alike.
/// </summary>
public interface IDiffusionScheduler
{
    /// <summary>The factory name (euler, euler-a, ddim, dpm++2m, dpm++2m-karras, lcm, pndm; ddpm-wuerstchen).</summary>
    string Name { get; }

    /// <summary>The step count last passed to <see cref="SetTimesteps"/> (0 before). PNDM runs one model call more than this.</summary>
    int InferenceSteps { get; }

    /// <summary>Plans <paramref name="steps"/> denoising steps and clears all per-run state.</summary>
    void SetTimesteps(int steps);

    /// <summary>
    /// The model timestep of each step, in order: one entry per <see cref="Step"/> call. Whole numbers for the discrete
    /// schedulers; Euler's may be fractional (linspace spacing, Karras σ), as in diffusers — feed them to the model as they are.
    /// </summary>
    IReadOnlyList<double> Timesteps { get; }

    /// <summary>Scale of the initial latents: multiply N(0,1) noise by this before the first step.</summary>
    float InitNoiseSigma { get; }

    /// <summary>The factor the model input is multiplied by at step <paramref name="stepIndex"/> (1/√(σ²+1) for Euler, 1 for the others).</summary>
    float ScaleModelInputFactor(int stepIndex);

    /// <summary>
    /// Advances <paramref name="sample"/> in place by one step given the model's output at step <paramref name="stepIndex"/>.
    /// Allocates nothing after the first call of a run. <paramref name="noise"/> is needed only by stochastic samplers
    /// (Euler a, LCM before its last step, DDIM with η &gt; 0); the others ignore it.
    /// </summary>
    void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise = null);

    /// <summary>img2img: writes <paramref name="original"/> noised to the level of step <paramref name="stepIndex"/> into <paramref name="destination"/>.</summary>
    void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination);

    /// <summary>
    /// img2img: the step to start from for a denoising <paramref name="strength"/> in [0, 1] (diffusers' get_timesteps):
    /// init = min(⌊steps·strength⌋, steps), start = max(steps − init, 0). Strength 1 starts at 0; 0 skips every step.
    /// </summary>
    int StartIndexForStrength(double strength);
}
