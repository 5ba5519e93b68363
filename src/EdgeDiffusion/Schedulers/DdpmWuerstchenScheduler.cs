using System.Runtime.CompilerServices;

namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Stable Cascade's sampler (diffusers' DDPMWuerstchenScheduler), both stages: continuous t ∈ [0, 1] with the cosine
/// schedule ᾱ(t) = cos²((t + s)/(1 + s)·π/2) / cos²(s/(1 + s)·π/2), clamped to [1e-4, 0.9999] (s = 0.008; a scaler ≠ 1
/// first maps t to 1 − (1 − t)^scaler above 1 or t^scaler below). Timesteps: linspace(1, 0, N + 1) without the last; the
/// model gets t itself as <c>timestep_ratio</c>. A step from t to the next t' with α = ᾱ(t)/ᾱ(t') is the DDPM posterior:
/// μ = (x − (1 − α) ε / √(1 − ᾱ(t))) / √α, σ = √((1 − α)(1 − ᾱ(t')) / (1 − ᾱ(t))), x' = μ + σ z, without noise when t' = 0.
/// </summary>
public sealed class DdpmWuerstchenScheduler : IDiffusionScheduler
{
    private double[] _timesteps = [];
    private float[] _noise = [];
    private int _nextStep = -1;

    public DdpmWuerstchenScheduler(double s = 0.008, double scaler = 1.0)
    {
        if (!(s > 0 && s < 1)) throw new InvalidArgumentException("s", $"is {s}; the cosine schedule's offset must be in (0, 1), usually 0.008");
        if (!(scaler > 0) || double.IsInfinity(scaler)) throw new InvalidArgumentException("scaler", $"is {scaler}; use a positive number, usually 1");
        S = s;
        Scaler = scaler;
        _initAlphaCumprod = Math.Pow(Math.Cos(s / (1 + s) * Math.PI * 0.5), 2);
    }

    private readonly double _initAlphaCumprod;

    public const string SchedulerName = "ddpm-wuerstchen";

    /// <summary>Reads <c>s</c> and <c>scaler</c> from a scheduler_config.json of class DDPMWuerstchenScheduler (defaults when absent).</summary>
    public static DdpmWuerstchenScheduler FromFile(string path)
    {
        System.Text.Json.Nodes.JsonNode? root;
        try { root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)); }
        catch (Exception e) when (e is System.Text.Json.JsonException or IOException)
        {
            throw new SchedulerConfigException(path, null, $"cannot be read ({e.Message.Split('\n')[0]}); restore it from the model's source");
        }
        string? cls = root?["_class_name"]?.GetValue<string>();
        if (cls is not null && cls != "DDPMWuerstchenScheduler")
            throw new SchedulerConfigException(path, "_class_name", $"is \"{cls}\"; Stable Cascade's stages use DDPMWuerstchenScheduler");
        double Number(string key, double fallback)
        {
            var node = root?[key];
            if (node is null) return fallback;
            return node is System.Text.Json.Nodes.JsonValue v && v.TryGetValue(out double d)
                ? d
                : throw new SchedulerConfigException(path, key, $"is {node.ToJsonString()}; write a number");
        }
        try { return new DdpmWuerstchenScheduler(Number("s", 0.008), Number("scaler", 1.0)); }
        catch (InvalidArgumentException e) { throw new SchedulerConfigException(path, e.Argument, e.Message[(e.Argument.Length + 2)..]); }
    }

    public string Name => SchedulerName;

    public double S { get; }

    public double Scaler { get; }

    public int InferenceSteps { get; private set; }

    public IReadOnlyList<double> Timesteps => _timesteps;

    public float InitNoiseSigma => 1f;

    /// <summary>ᾱ(t) as diffusers' _alpha_cumprod computes it.</summary>
    public double AlphaCumprod(double t)
    {
        if (Scaler > 1) t = 1 - Math.Pow(1 - t, Scaler);
        else if (Scaler < 1) t = Math.Pow(t, Scaler);
        double c = Math.Cos((t + S) / (1 + S) * Math.PI * 0.5);
        return Math.Clamp(c * c / _initAlphaCumprod, 0.0001, 0.9999);
    }

    public void SetTimesteps(int steps)
    {
        if (steps < 1 || steps > 1000) throw new InvalidArgumentException("steps", $"is {steps}; use 1 to 1000");
        var grid = TimestepGrid.Linspace(1.0, 0.0, steps + 1);
        _timesteps = grid[..steps];
        InferenceSteps = steps;
        _nextStep = -1;
    }

    public float ScaleModelInputFactor(int stepIndex)
    {
        CheckIndex(stepIndex);
        return 1f;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise = null)
    {
        CheckIndex(stepIndex);
        if (modelOutput.Length != sample.Length)
            throw new ArgumentException($"{Name}: the model output has {modelOutput.Length} values but the sample {sample.Length}; they must match", nameof(modelOutput));
        if (_nextStep >= 0 && stepIndex != _nextStep)
            throw new InvalidOperationException($"{Name}: step {stepIndex} requested after step {_nextStep - 1}; steps of one run must be consecutive (call SetTimesteps to start over)");
        double t = _timesteps[stepIndex];
        double prev = stepIndex + 1 < _timesteps.Length ? _timesteps[stepIndex + 1] : 0.0;
        double abar = AlphaCumprod(t), abarPrev = AlphaCumprod(prev);
        double alpha = abar / abarPrev;
        double muScale = 1 / Math.Sqrt(alpha), epsScale = (1 - alpha) / Math.Sqrt(1 - abar);
        double std = prev != 0 ? Math.Sqrt((1 - alpha) * (1 - abarPrev) / (1 - abar)) : 0;
        ReadOnlySpan<float> fresh = default;
        if (std > 0)
        {
            if (noise is null) throw new ArgumentNullException(nameof(noise), $"{Name} adds fresh noise at every step but the last; pass an INoiseSource such as GaussianNoise");
            if (_noise.Length < sample.Length) _noise = new float[sample.Length];
            noise.Fill(_noise.AsSpan(0, sample.Length));
            fresh = _noise.AsSpan(0, sample.Length);
        }
        for (int i = 0; i < sample.Length; i++)
        {
            double mu = muScale * (sample[i] - epsScale * modelOutput[i]);
            sample[i] = (float)(std > 0 ? mu + std * fresh[i] : mu);
        }
        _nextStep = stepIndex + 1;
    }

    public void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        CheckIndex(stepIndex);
        double abar = AlphaCumprod(_timesteps[stepIndex]), a = Math.Sqrt(abar), s = Math.Sqrt(1 - abar);
        for (int i = 0; i < original.Length; i++) destination[i] = (float)(a * original[i] + s * noise[i]);
    }

    public int StartIndexForStrength(double strength) => SchedulerBase.StartIndexFor(Name, InferenceSteps, strength);

    private void CheckIndex(int stepIndex)
    {
        if (_timesteps.Length == 0) throw new InvalidOperationException($"{Name}: call SetTimesteps before stepping");
        if ((uint)stepIndex >= (uint)_timesteps.Length)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), stepIndex, $"{Name}: step index must be in [0, {_timesteps.Length})");
    }
}
