using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// PNDM's pseudo linear multistep method (Liu et al. 2022, PLMS) as diffusers runs it for Stable Diffusion
/// (PNDMScheduler with skip_prk_steps: no Runge–Kutta warm-up). The spaced timesteps d_0 > d_1 > ... > d_{m−1} are run as
/// d_0, d_1, d_1, d_2, ..., d_{m−1}: m + 1 model calls. Call 0 steps d_0 → d_1 with ε_0; call 1 redoes that step from the
/// same start with (ε_0 + ε_1)/2 (a Heun-like warm-up); later calls combine the last outputs with the Adams–Bashforth
/// weights (3, −1)/2, (23, −16, 5)/12, (55, −59, 37, −9)/24. Each step applies the pseudo-numerical transfer (eq. 11):
/// x_prev = √(ᾱ_prev/ᾱ_t) x − (ᾱ_prev − ᾱ_t) ε / (ᾱ_t √(1 − ᾱ_prev) + √(ᾱ_t (1 − ᾱ_t) ᾱ_prev)), prev = t − N div steps.
/// As in diffusers, the combination is over raw model outputs; v and x_0 predictions are turned into ε afterwards.
/// skip_prk_steps in a config is ignored: this is always the PLMS variant.
/// </summary>
public sealed class PndmScheduler : SchedulerBase
{
    private readonly double _finalAlphaCumprod;
    private readonly float[][] _outputs = new float[4][]; // ring of the last four model outputs
    private int _newest = -1, _outputCount;
    private float[] _firstSample = [];

    public PndmScheduler(SchedulerConfig config) : base("pndm", config)
    {
        _finalAlphaCumprod = (config.SetAlphaToOne ?? false) ? 1.0 : Schedule.AlphasCumprod[0];
    }

    protected override double[] Plan(int steps)
    {
        var d = TimestepGrid.Descending(Config.TimestepSpacing ?? TimestepSpacing.Leading, Config.NumTrainTimesteps, steps, Config.StepsOffset, roundLinspace: true);
        _newest = -1;
        _outputCount = 0;
        if (steps == 1) return d;
        var t = new double[steps + 1];
        t[0] = d[0];
        for (int i = 1; i < steps; i++) t[i + 1] = d[i];
        t[1] = d[1];
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        int n = sample.Length;
        if (_firstSample.Length < n)
        {
            for (int k = 0; k < _outputs.Length; k++) _outputs[k] = new float[n];
            _firstSample = new float[n];
        }
        int counter = StepsTaken;
        int t = (int)TimestepAt(stepIndex), stride = Config.NumTrainTimesteps / InferenceSteps;
        int prev = t - stride;
        if (counter == 1)
        {
            // The redo of the first step: same start (t + stride, the first sample), averaged output.
            prev = t;
            t += stride;
            _firstSample.AsSpan(0, n).CopyTo(sample);
        }
        else
        {
            _newest = (_newest + 1) % 4;
            modelOutput.CopyTo(_outputs[_newest]);
            _outputCount = Math.Min(_outputCount + 1, 4);
            if (counter == 0) sample.CopyTo(_firstSample);
        }

        double alpha = AlphaCumprodAt(t), alphaPrev = prev >= 0 ? AlphaCumprodAt(prev) : _finalAlphaCumprod;
        double a = Math.Sqrt(alpha), s = Math.Sqrt(1 - alpha);
        double sampleCoeff = Math.Sqrt(alphaPrev / alpha);
        double epsCoeff = (alphaPrev - alpha) / (alpha * Math.Sqrt(1 - alphaPrev) + Math.Sqrt(alpha * (1 - alpha) * alphaPrev));
        var e1 = Output(1);
        var e2 = _outputCount >= 2 ? Output(2) : default;
        var e3 = _outputCount >= 3 ? Output(3) : default;
        var e4 = _outputCount >= 4 ? Output(4) : default;
        var type = Config.PredictionType;
        for (int i = 0; i < n; i++)
        {
            double combined = counter == 1 ? (modelOutput[i] + (double)e1[i]) / 2 : _outputCount switch
            {
                1 => e1[i],
                2 => (3.0 * e1[i] - e2[i]) / 2,
                3 => (23.0 * e1[i] - 16.0 * e2[i] + 5.0 * e3[i]) / 12,
                _ => (55.0 * e1[i] - 59.0 * e2[i] + 37.0 * e3[i] - 9.0 * e4[i]) / 24,
            };
            double x = sample[i];
            double eps = Prediction.Epsilon(type, combined, x, a, s);
            sample[i] = (float)(sampleCoeff * x - epsCoeff * eps);
        }
    }

    /// <summary>The k-th newest stored model output (k = 1 is the latest).</summary>
    private ReadOnlySpan<float> Output(int k) => _outputs[(_newest - (k - 1) + 4) % 4];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddNoiseCore(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int stepIndex, Span<float> destination) =>
        NoiseToAlpha(original, noise, AlphaCumprodAt((int)TimestepAt(stepIndex)), destination);
}
