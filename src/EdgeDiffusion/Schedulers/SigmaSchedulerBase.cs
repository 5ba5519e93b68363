using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// The Euler family (k-diffusion samplers as diffusers runs them): the latent lives in the variance-exploding form
/// x = x_0 + σ ε, σ descends from σ_max to 0, and the model sees x/√(σ² + 1) (which is the VP sample it was trained on).
/// </summary>
public abstract class SigmaSchedulerBase : SchedulerBase
{
    private double[] _sigmas = [];

    private protected SigmaSchedulerBase(string name, SchedulerConfig config) : base(name, config)
    {
        SigmaTable = SigmaMath.Table(Schedule);
        LogSigmaTable = SigmaMath.Log(SigmaTable);
    }

    /// <summary>σ of each step, then the final σ (0, or σ_min): <see cref="IScheduler.Timesteps"/>.Count + 1 values.</summary>
    public IReadOnlyList<double> Sigmas => _sigmas;

    protected double[] SigmaTable { get; }

    protected double[] LogSigmaTable { get; }

    /// <summary>
    /// Whether use_karras_sigmas, timestep_type and final_sigmas_type apply: EulerDiscreteScheduler has them,
    /// EulerAncestralDiscreteScheduler does not (it always ends at σ = 0 on the spaced timesteps).
    /// </summary>
    protected virtual bool ExtendedOptions => true;

    private TimestepSpacing Spacing => Config.TimestepSpacing ?? TimestepSpacing.Linspace;

    protected override double[] Plan(int steps)
    {
        int n = Config.NumTrainTimesteps;
        // Euler keeps linspace timesteps fractional and reads σ between table entries.
        double[] timesteps = TimestepGrid.Descending(Spacing, n, steps, Config.StepsOffset, roundLinspace: false);
        var sigmas = new double[steps + 1];
        for (int i = 0; i < steps; i++) sigmas[i] = SigmaMath.Interpolate(SigmaTable, timesteps[i]);

        if (ExtendedOptions && Config.UseKarrasSigmas)
        {
            // Karras between the first and last spaced σ; the model is then fed the (fractional) timesteps of those σ.
            var karras = SigmaMath.Karras(sigmas[0], sigmas[steps - 1], steps);
            for (int i = 0; i < steps; i++)
            {
                sigmas[i] = karras[i];
                timesteps[i] = SigmaMath.SigmaToT(karras[i], LogSigmaTable);
            }
        }
        sigmas[steps] = ExtendedOptions && Config.FinalSigmasType == FinalSigmasType.SigmaMin ? SigmaTable[0] : 0;

        if (ExtendedOptions && Config.TimestepType == TimestepType.Continuous && Config.PredictionType == PredictionType.VPrediction)
            for (int i = 0; i < steps; i++) timesteps[i] = 0.25 * Math.Log(sigmas[i]); // the EDM c_noise of v-models trained on it
        _sigmas = sigmas;
        return timesteps;
    }

    /// <summary>
    /// σ_max for linspace and trailing spacing, √(σ_max² + 1) for leading (diffusers' init_noise_sigma: leading starts
    /// below t = N−1, and the extra 1 makes the initial latent's variance match that of x/√ᾱ there).
    /// </summary>
    public override float InitNoiseSigma
    {
        get
        {
            if (_sigmas.Length == 0) throw new InvalidOperationException($"{Name}: call SetTimesteps before reading InitNoiseSigma");
            double max = _sigmas.Max();
            return (float)(Spacing == TimestepSpacing.Leading ? Math.Sqrt(max * max + 1) : max);
        }
    }

    /// <summary>1/√(σ_i² + 1): turns the VE latent back into the VP input the model was trained on.</summary>
    public override float ScaleModelInputFactor(int stepIndex)
    {
        base.ScaleModelInputFactor(stepIndex);
        double sigma = _sigmas[stepIndex];
        return (float)(1 / Math.Sqrt(sigma * sigma + 1));
    }

    /// <summary>The σ of step <paramref name="stepIndex"/> (index Timesteps.Count is the final σ).</summary>
    protected double SigmaAt(int stepIndex) => _sigmas[stepIndex];

    /// <summary>img2img: x_0 + σ_i ε.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        double sigma = _sigmas[stepIndex];
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(original[i] + noise[i] * sigma);
    }

    /// <summary>The denoised estimate x_0 from the model output at σ, for the VE latent x.</summary>
    protected static double X0(PredictionType type, double output, double x, double sigma) => type switch
    {
        PredictionType.Epsilon => x - sigma * output,
        // v-models see x/√(σ²+1): x_0 = c_skip·x + c_out·v with c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1).
        PredictionType.VPrediction => output * (-sigma / Math.Sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1),
        _ => output,
    };
}
