using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Latent Consistency Model sampling (Luo et al. 2023, Algorithm 1; diffusers' LCMScheduler). Timesteps come from the
/// distillation schedule t_k = k·(N div original_inference_steps) − 1, k = 1..original_inference_steps, taken at
/// ⌊j·len/steps⌋ from the top. Each step maps x_t to the consistency estimate
/// denoised = c_out(t)·x_0 + c_skip(t)·x_t with c_skip = σ_d²/((τt)² + σ_d²), c_out = τt/√((τt)² + σ_d²), σ_d = 0.5,
/// τ = timestep_scaling; before the last step it is re-noised to the next timestep: √ᾱ_next·denoised + √(1−ᾱ_next)·z.
/// </summary>
public sealed class LcmScheduler : SchedulerBase
{
    private const double SigmaData = 0.5;
    private readonly bool _clip;

    /// <summary>timestep_spacing, steps_offset and set_alpha_to_one do not apply: LCM's timesteps are all ≥ 0 by construction.</summary>
    public LcmScheduler(SchedulerConfig config) : base("lcm", config)
    {
        if (config.OriginalInferenceSteps > config.NumTrainTimesteps)
            throw new InvalidArgumentException("original_inference_steps",
                $"is {config.OriginalInferenceSteps} but num_train_timesteps is {config.NumTrainTimesteps}; LCM draws its timesteps from at most that many");
        _clip = config.ClipSample ?? false;
    }

    /// <summary>The boundary-condition scalings at timestep t: c_skip → 1 and c_out → 0 as t → 0, so the model is the identity at t = 0.</summary>
    public (double CSkip, double COut) BoundaryScalings(double timestep)
    {
        double scaled = timestep * Config.TimestepScaling;
        double denominator = scaled * scaled + SigmaData * SigmaData;
        return (SigmaData * SigmaData / denominator, scaled / Math.Sqrt(denominator));
    }

    protected override double[] Plan(int steps)
    {
        int original = Config.OriginalInferenceSteps;
        if (steps > original)
            throw new InvalidArgumentException("steps", $"is {steps}; LCM draws its steps from original_inference_steps ({original}), so use at most {original}");
        int k = Config.NumTrainTimesteps / original;
        // Distillation timesteps, highest first: original·k − 1, ..., k − 1.
        var indices = TimestepGrid.Linspace(0, original, steps, endpoint: false);
        var t = new double[steps];
        for (int j = 0; j < steps; j++)
        {
            int index = (int)Math.Floor(indices[j]);
            t[j] = (original - index) * k - 1;
        }
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        int t = (int)TimestepAt(stepIndex);
        bool last = stepIndex == Timesteps.Count - 1;
        double alpha = AlphaCumprodAt(t);
        double a = Math.Sqrt(alpha), s = Math.Sqrt(1 - alpha);
        var (cSkip, cOut) = BoundaryScalings(t);
        double alphaNext = last ? 0 : AlphaCumprodAt((int)TimestepAt(stepIndex + 1));
        double aNext = Math.Sqrt(alphaNext), sNext = Math.Sqrt(1 - alphaNext);
        var fresh = last ? default : DrawNoise(noise, sample.Length);
        var type = Config.PredictionType;
        double range = Config.ClipSampleRange;
        for (int i = 0; i < sample.Length; i++)
        {
            double x = sample[i];
            double x0 = Prediction.X0(type, modelOutput[i], x, a, s);
            if (_clip) x0 = Math.Clamp(x0, -range, range);
            double denoised = cOut * x0 + cSkip * x;
            sample[i] = (float)(last ? denoised : aNext * denoised + sNext * fresh[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination) =>
        NoiseToAlpha(original, noise, AlphaCumprodAt((int)TimestepAt(stepIndex)), destination);
}
