namespace EdgeDiffusion.Schedulers;

/// <summary>
/// The training noise schedule: β_t, ᾱ_t = Π_{s≤t} (1 − β_s) and σ_t = √((1 − ᾱ_t)/ᾱ_t), t = 0..N−1, all in double.
/// (diffusers builds these tables in float32; double keeps the 1000-term product accurate to ~1e-15.)
/// </summary>
public sealed class NoiseSchedule
{
    private readonly double[] _betas;
    private readonly double[] _alphasCumprod;

    private NoiseSchedule(double[] betas)
    {
        _betas = betas;
        _alphasCumprod = new double[betas.Length];
        double product = 1;
        for (int t = 0; t < betas.Length; t++)
        {
            product *= 1 - betas[t];
            _alphasCumprod[t] = product;
        }
    }

    /// <summary>Builds the schedule a config describes (trained_betas when present, else beta_schedule).</summary>
    public static NoiseSchedule FromConfig(SchedulerConfig config)
    {
        config.Validate();
        int n = config.NumTrainTimesteps;
        double[] betas = config.TrainedBetas is { } trained ? [.. trained] : config.BetaSchedule switch
        {
            BetaSchedule.Linear => Linear(config.BetaStart, config.BetaEnd, n, x => x),
            BetaSchedule.ScaledLinear => Linear(Math.Sqrt(config.BetaStart), Math.Sqrt(config.BetaEnd), n, x => x * x),
            BetaSchedule.SquaredCosCapV2 => Cosine(n),
            _ => throw new ArgumentOutOfRangeException(nameof(config), config.BetaSchedule, "unknown beta schedule"),
        };
        return new NoiseSchedule(betas);
    }

    /// <summary>N, the number of training timesteps.</summary>
    public int Length => _betas.Length;

    public IReadOnlyList<double> Betas => _betas;

    public IReadOnlyList<double> AlphasCumprod => _alphasCumprod;

    /// <summary>σ_t = √((1 − ᾱ_t)/ᾱ_t): the noise level of timestep t in the variance-exploding view x/√ᾱ = x_0 + σ ε.</summary>
    public double Sigma(int t) => Math.Sqrt((1 - _alphasCumprod[t]) / _alphasCumprod[t]);

    /// <summary>map(a + (b − a)·i/(n − 1)) for i = 0..n−1: evenly spaced from a to b inclusive, like torch.linspace but in double.</summary>
    private static double[] Linear(double a, double b, int n, Func<double, double> map)
    {
        var result = new double[n];
        for (int i = 0; i < n; i++)
            result[i] = map(n == 1 ? a : a + (b - a) * i / (n - 1));
        return result;
    }

    /// <summary>
    /// squaredcos_cap_v2 (Nichol &amp; Dhariwal 2021): ᾱ(t) = cos²((t + 0.008)/1.008 · π/2) on t ∈ [0, 1], and
    /// β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), 0.999) so that the product of (1 − β) follows ᾱ; the cap avoids a singular last step.
    /// </summary>
    private static double[] Cosine(int n)
    {
        static double AlphaBar(double t)
        {
            double c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2);
            return c * c;
        }
        var result = new double[n];
        for (int i = 0; i < n; i++)
            result[i] = Math.Min(1 - AlphaBar((i + 1.0) / n) / AlphaBar((double)i / n), 0.999);
        return result;
    }
}
