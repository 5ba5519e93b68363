using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// DDIM (Song et al. 2021, eq. 12; diffusers' DDIMScheduler): from x_t predict x_0 and ε, then
/// x_prev = √ᾱ_prev x_0 + √(1 − ᾱ_prev − σ_t²) ε + σ_t z with σ_t = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev).
/// η = 0 (the default) is deterministic. The previous timestep is the next one of the planned grid, and ᾱ past the last
/// step is 1 (set_alpha_to_one, default true) or ᾱ_0. diffusers takes t − N div steps for every spacing: the same under
/// leading and trailing spacing, but under linspace (52.6 apart for 20 steps) each step lands 2–3 timesteps short of
/// where the model is next evaluated and the picture ends with the noise of t ≈ 50 left in it. Clipping x_0 (clip_sample)
/// defaults to on only for configs written for DDIM or DDPM (<see cref="SchedulerConfig.WrittenFor"/>).
/// </summary>
public sealed class DdimScheduler : SchedulerBase
{
    private readonly double _finalAlphaCumprod;
    private readonly bool _clip;

    public DdimScheduler(SchedulerConfig config, double eta = 0) : base("ddim", config)
    {
        if (!(eta >= 0 && eta <= 1)) throw new InvalidArgumentException("eta", $"is {eta}; DDIM's η must be between 0 (deterministic) and 1 (DDPM-like)");
        Eta = eta;
        _finalAlphaCumprod = (config.SetAlphaToOne ?? true) ? 1.0 : Schedule.AlphasCumprod[0];
        _clip = config.ClipSample ?? config.WrittenFor("DDIMScheduler", "DDPMScheduler");
    }

    /// <summary>η: 0 for deterministic DDIM, 1 for the DDPM posterior's variance.</summary>
    public double Eta { get; }

    protected override double[] Plan(int steps) =>
        TimestepGrid.Descending(Config.TimestepSpacing ?? TimestepSpacing.Leading, Config.NumTrainTimesteps, steps, Config.StepsOffset, roundLinspace: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        int t = (int)TimestepAt(stepIndex);
        int prev = stepIndex + 1 < Timesteps.Count ? (int)TimestepAt(stepIndex + 1) : -1;
        double alpha = AlphaCumprodAt(t), alphaPrev = prev >= 0 ? AlphaCumprodAt(prev) : _finalAlphaCumprod;
        double a = Math.Sqrt(alpha), s = Math.Sqrt(1 - alpha);
        double variance = (1 - alphaPrev) / (1 - alpha) * (1 - alpha / alphaPrev);
        double std = Eta * Math.Sqrt(variance);
        double x0Coeff = Math.Sqrt(alphaPrev), epsCoeff = Math.Sqrt(1 - alphaPrev - std * std);
        var fresh = std > 0 ? DrawNoise(noise, sample.Length) : default;
        var type = Config.PredictionType;
        double range = Config.ClipSampleRange;
        for (int i = 0; i < sample.Length; i++)
        {
            double x = sample[i], output = modelOutput[i];
            double x0 = Prediction.X0(type, output, x, a, s);
            double eps = Prediction.Epsilon(type, output, x, a, s); // from the unclipped x_0, as diffusers does by default
            if (_clip) x0 = Math.Clamp(x0, -range, range);
            double next = x0Coeff * x0 + epsCoeff * eps;
            if (std > 0) next += std * fresh[i];
            sample[i] = (float)next;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination) =>
        NoiseToAlpha(original, noise, AlphaCumprodAt((int)TimestepAt(stepIndex)), destination);
}
