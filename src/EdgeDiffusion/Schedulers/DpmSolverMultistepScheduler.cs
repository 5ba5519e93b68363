using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// DPM-Solver++ 2M (Lu et al. 2022, arXiv:2211.01095, Algorithm 2; diffusers' DPMSolverMultistepScheduler with
/// algorithm_type dpmsolver++, solver_order 2, solver_type midpoint). With α = 1/√(σ²+1), s = σα and λ = ln(α/s) = −ln σ,
/// h = λ_next − λ_i and D0 the x_0 prediction at step i:
/// first order  x_next = (s_next/s_i) x − α_next (e^{−h} − 1) D0   (DPM-Solver-1, the same as DDIM),
/// second order x_next = (s_next/s_i) x − α_next (e^{−h} − 1) (D0 + ½ D1), D1 = (D0 − D0_prev)/r, r = (λ_i − λ_prev)/h.
/// The first step of a run is first order (no history yet), and so is the last when final_sigmas_type is zero,
/// euler_at_final is set, or lower_order_final is set and there are fewer than 15 steps. Deterministic.
/// With use_karras_sigmas the σ follow Karras' ρ = 7 spacing between the training σ_max and σ_min.
/// </summary>
public sealed class DpmSolverMultistepScheduler : SchedulerBase
{
    private readonly double[] _sigmaTable;
    private readonly double[] _logSigmaTable;
    private double[] _sigmas = [];
    private float[] _previousX0 = [];

    /// <summary>Named dpm++2m-karras when the config sets use_karras_sigmas, dpm++2m otherwise.</summary>
    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(NameFor(config), config)
    {
        _sigmaTable = SigmaMath.Table(Schedule);
        _logSigmaTable = SigmaMath.Log(_sigmaTable);
    }

    /// <summary>σ of each step, then the final σ (0, or σ_min).</summary>
    public IReadOnlyList<double> Sigmas => _sigmas;

    protected override double[] Plan(int steps)
    {
        int n = Config.NumTrainTimesteps;
        var t = new double[steps];
        switch (Config.TimestepSpacing ?? TimestepSpacing.Linspace)
        {
            case TimestepSpacing.Linspace: // steps + 1 points from N−1 to 0, dropping the final 0
                var grid = TimestepGrid.Linspace(0, n - 1, steps + 1);
                for (int i = 0; i < steps; i++) t[i] = Math.Round(grid[steps - i]);
                break;
            case TimestepSpacing.Leading:
                int ratio = n / (steps + 1);
                for (int i = 0; i < steps; i++) t[i] = (steps - i) * ratio + Config.StepsOffset;
                break;
            case TimestepSpacing.Trailing:
                TimestepGrid.Trailing(n, n, steps, t);
                break;
        }

        var sigmas = new double[steps + 1];
        if (Config.UseKarrasSigmas)
        {
            var karras = SigmaMath.Karras(_sigmaTable[^1], _sigmaTable[0], steps);
            for (int i = 0; i < steps; i++)
            {
                sigmas[i] = karras[i];
                t[i] = Math.Round(SigmaMath.SigmaToT(karras[i], _logSigmaTable));
            }
        }
        else
        {
            for (int i = 0; i < steps; i++) sigmas[i] = _sigmaTable[(int)t[i]];
        }
        sigmas[steps] = Config.FinalSigmasType == FinalSigmasType.SigmaMin ? _sigmaTable[0] : 0;
        _sigmas = sigmas;
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        if (_previousX0.Length < sample.Length) _previousX0 = new float[sample.Length];
        int count = Timesteps.Count;
        bool lastFirstOrder = stepIndex == count - 1 &&
            (Config.EulerAtFinal || (Config.LowerOrderFinal && count < 15) || Config.FinalSigmasType == FinalSigmasType.Zero);
        bool secondOrder = StepsTaken >= 1 && !lastFirstOrder;

        double sigmaS = _sigmas[stepIndex], sigmaT = _sigmas[stepIndex + 1];
        double alphaS = Alpha(sigmaS), sS = sigmaS * alphaS;
        double alphaT = Alpha(sigmaT), sT = sigmaT * alphaT;
        double h = Lambda(sigmaT) - Lambda(sigmaS); // +∞ when σ_next = 0: e^{−h} = 0 and the step lands on D0
        double keep = sT / sS, phi = alphaT * (Math.Exp(-h) - 1);
        double halfPhiOverR = 0;
        if (secondOrder)
        {
            double r = (Lambda(sigmaS) - Lambda(_sigmas[stepIndex - 1])) / h;
            halfPhiOverR = 0.5 * phi / r;
        }

        var type = Config.PredictionType;
        var previous = _previousX0.AsSpan(0, sample.Length);
        for (int i = 0; i < sample.Length; i++)
        {
            double x = sample[i];
            double d0 = Prediction.X0(type, modelOutput[i], x, alphaS, sS);
            double next = keep * x - phi * d0;
            if (secondOrder) next -= halfPhiOverR * (d0 - previous[i]);
            previous[i] = (float)d0;
            sample[i] = (float)next;
        }
    }

    /// <summary>img2img: α x_0 + s ε at the step's σ (the same as √ᾱ x_0 + √(1−ᾱ) ε for σ on the training table).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination)
    {
        double sigma = _sigmas[stepIndex];
        NoiseToAlpha(original, noise, 1 / (sigma * sigma + 1), destination);
    }

    private static string NameFor(SchedulerConfig config) =>
        (config ?? throw new ArgumentNullException(nameof(config))).UseKarrasSigmas ? "dpm++2m-karras" : "dpm++2m";

    private static double Alpha(double sigma) => 1 / Math.Sqrt(sigma * sigma + 1);

    private static double Lambda(double sigma) => -Math.Log(sigma);
}
