namespace EdgeDiffusion.Schedulers;

/// <summary>
/// What every scheduler shares: the config and its noise schedule, the timestep list, argument checks,
/// the in-order rule for steps, a reusable noise buffer and the img2img start index.
/// </summary>
public abstract class SchedulerBase : IScheduler
{
    private double[] _timesteps = [];
    private IReadOnlyList<double> _timestepsView = Array.Empty<double>();
    private float[] _noise = [];
    private int _nextStep = -1;

    // private protected: the set of schedulers is closed; a new one belongs in this folder with its tests.
    private protected SchedulerBase(string name, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Name = name;
        Config = config;
        Schedule = NoiseSchedule.FromConfig(config);
    }

    public string Name { get; }

    public SchedulerConfig Config { get; }

    /// <summary>β, ᾱ and σ of the training timesteps.</summary>
    public NoiseSchedule Schedule { get; }

    public int InferenceSteps { get; private set; }

    public IReadOnlyList<double> Timesteps => _timestepsView;

    public virtual float InitNoiseSigma => 1f;

    /// <summary>Step calls since <see cref="SetTimesteps"/>: multistep solvers count their history with it.</summary>
    protected int StepsTaken { get; private set; }

    public void SetTimesteps(int steps)
    {
        if (steps < 1 || steps > Config.NumTrainTimesteps)
            throw new InvalidArgumentException("steps", $"is {steps}; {Name} needs between 1 and num_train_timesteps ({Config.NumTrainTimesteps}) steps");
        _timesteps = Plan(steps);
        _timestepsView = Array.AsReadOnly(_timesteps);
        InferenceSteps = steps;
        _nextStep = -1;
        StepsTaken = 0;
    }

    /// <summary>Computes the timesteps (and any per-run tables) for <paramref name="steps"/> steps; per-run state is reset by the base.</summary>
    protected abstract double[] Plan(int steps);

    public virtual float ScaleModelInputFactor(int stepIndex)
    {
        CheckIndex(stepIndex);
        return 1f;
    }

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise = null)
    {
        CheckIndex(stepIndex);
        if (modelOutput.Length != sample.Length)
            throw new ArgumentException($"{Name}: the model output has {modelOutput.Length} values but the sample {sample.Length}; they must match", nameof(modelOutput));
        if (_nextStep >= 0 && stepIndex != _nextStep)
            throw new InvalidOperationException($"{Name}: step {stepIndex} requested after step {_nextStep - 1}; steps of one run must be consecutive (call SetTimesteps to start over)");
        StepCore(modelOutput, stepIndex, sample, noise);
        _nextStep = stepIndex + 1;
        StepsTaken++;
    }

    protected abstract void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise);

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        CheckIndex(stepIndex);
        if (noise.Length != original.Length || destination.Length != original.Length)
            throw new ArgumentException($"{Name}: AddNoise needs original, noise and destination of one length (got {original.Length}, {noise.Length}, {destination.Length})");
        AddNoiseCore(original, noise, stepIndex, destination);
    }

    protected abstract void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination);

    public virtual int StartIndexForStrength(double strength) => StartIndexFor(Name, InferenceSteps, strength);

    /// <summary>diffusers' get_timesteps for <paramref name="steps"/> planned steps: init = min(⌊steps·strength⌋, steps), start = steps − init.</summary>
    internal static int StartIndexFor(string name, int steps, double strength)
    {
        if (!(strength >= 0 && strength <= 1))
            throw new InvalidArgumentException("strength", $"is {strength}; it must be between 0 (keep the image) and 1 (ignore it)");
        if (steps == 0) throw new InvalidOperationException($"{name}: call SetTimesteps before StartIndexForStrength");
        int init = Math.Min((int)(steps * strength), steps);
        return Math.Max(steps - init, 0);
    }

    /// <summary>The forward process q(x_t | x_0) = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, the img2img noising of the ᾱ-based schedulers.</summary>
    protected static void NoiseToAlpha(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double alphaCumprod, Span<float> destination)
    {
        double a = Math.Sqrt(alphaCumprod), s = Math.Sqrt(1 - alphaCumprod);
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(a * original[i] + s * noise[i]);
    }

    /// <summary>Fresh N(0,1) values for one step, in a buffer reused across steps (grown only when the sample grows).</summary>
    protected ReadOnlySpan<float> DrawNoise(INoiseSource? noise, int length)
    {
        if (noise is null) throw new ArgumentNullException(nameof(noise), $"{Name} adds fresh noise at this step; pass an INoiseSource such as GaussianNoise");
        if (_noise.Length < length) _noise = new float[length];
        var span = _noise.AsSpan(0, length);
        noise.Fill(span);
        return span;
    }

    /// <summary>The timestep of step <paramref name="stepIndex"/>.</summary>
    protected double TimestepAt(int stepIndex) => _timesteps[stepIndex];

    /// <summary>ᾱ at a whole-numbered timestep.</summary>
    protected double AlphaCumprodAt(int timestep) => Schedule.AlphasCumprod[timestep];

    private void CheckIndex(int stepIndex)
    {
        if (_timesteps.Length == 0) throw new InvalidOperationException($"{Name}: call SetTimesteps before stepping");
        if ((uint)stepIndex >= (uint)_timesteps.Length)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), stepIndex, $"{Name}: step index must be in [0, {_timesteps.Length})");
    }
}

/// <summary>Turns a model output into x_0 and ε, in the VP form x = a·x_0 + s·ε with a = √ᾱ and s = √(1 − ᾱ).</summary>
internal static class Prediction
{
    public static double X0(PredictionType type, double output, double x, double a, double s) => type switch
    {
        PredictionType.Epsilon => (x - s * output) / a,
        PredictionType.VPrediction => a * x - s * output, // v = a·ε − s·x_0 and x = a·x_0 + s·ε, with a² + s² = 1
        _ => output,
    };

    public static double Epsilon(PredictionType type, double output, double x, double a, double s) => type switch
    {
        PredictionType.Epsilon => output,
        PredictionType.VPrediction => a * output + s * x,
        _ => (x - a * output) / s,
    };
}
