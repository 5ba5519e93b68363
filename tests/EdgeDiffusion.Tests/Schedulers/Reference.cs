using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

/// <summary>
/// Expected values written out from the published formulas, independently of the library code:
/// Stable Diffusion's scaled_linear schedule β_i = (√0.00085 + i/999·(√0.012 − √0.00085))², ᾱ_t = Π_{i≤t}(1 − β_i), σ_t = √((1 − ᾱ_t)/ᾱ_t).
/// </summary>
internal static class Reference
{
    public static readonly double[] AlphaBar = SdAlphaBar();

    private static double[] SdAlphaBar()
    {
        var result = new double[1000];
        double product = 1;
        for (int i = 0; i < 1000; i++)
        {
            double root = Math.Sqrt(0.00085) + i / 999.0 * (Math.Sqrt(0.012) - Math.Sqrt(0.00085));
            product *= 1 - root * root;
            result[i] = product;
        }
        return result;
    }

    public static double Sigma(int t) => Math.Sqrt((1 - AlphaBar[t]) / AlphaBar[t]);

    /// <summary>SD 1.5's shipped scheduler config: PNDM, scaled_linear, steps_offset 1, set_alpha_to_one false, no timestep_spacing key.</summary>
    public static SchedulerConfig Sd15 => new()
    {
        ClassName = "PNDMScheduler",
        BetaSchedule = BetaSchedule.ScaledLinear,
        StepsOffset = 1,
        SetAlphaToOne = false,
        ClipSample = false,
    };

    /// <summary>SD-Turbo's: Euler, trailing spacing.</summary>
    public static SchedulerConfig SdTurbo => Sd15 with { ClassName = "EulerDiscreteScheduler", TimestepSpacing = TimestepSpacing.Trailing };

    /// <summary>A few latent values with both signs and magnitudes around the N(0,1) scale.</summary>
    public static float[] Latents => [0.5f, -1.25f, 2.0f, 0.0f, -0.375f, 1.0f];

    public static float[] ModelOutput => [0.1f, 0.7f, -0.4f, 1.5f, -0.9f, 0.05f];

    public static void Close(double expected, double actual, double relative = 1e-6)
    {
        double tolerance = relative * Math.Max(1, Math.Abs(expected));
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"expected {expected:R}, got {actual:R} (tolerance {tolerance:G3})");
    }

    public static void Close(IReadOnlyList<double> expected, ReadOnlySpan<float> actual, double relative = 1e-6)
    {
        Assert.Equal(expected.Count, actual.Length);
        for (int i = 0; i < expected.Count; i++) Close(expected[i], actual[i], relative);
    }
}

/// <summary>Noise with known values, so stochastic steps can be checked by hand.</summary>
internal sealed class FixedNoise(params float[] values) : INoiseSource
{
    public int Calls { get; private set; }

    public void Fill(Span<float> destination)
    {
        Calls++;
        for (int i = 0; i < destination.Length; i++) destination[i] = values[i % values.Length];
    }
}
