using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class NoiseScheduleTests
{
    [Fact]
    public void ScaledLinearBetasAreSquaresOfEvenlySpacedRoots()
    {
        var schedule = NoiseSchedule.FromConfig(new SchedulerConfig());
        Assert.Equal(1000, schedule.Length);
        Reference.Close(0.00085, schedule.Betas[0], 1e-14);
        Reference.Close(0.012, schedule.Betas[999], 1e-14);
        // i = 500: √β = √0.00085 + 500/999 · (√0.012 − √0.00085), the roots written out to 16 digits.
        double root = 0.0291547594742265 + 500.0 / 999 * (0.10954451150103323 - 0.0291547594742265);
        Reference.Close(root * root, schedule.Betas[500], 1e-14);
        Reference.Close(0.004814954, schedule.Betas[500], 1e-9); // ≈ 0.0693899², a sanity anchor
    }

    [Fact]
    public void LinearBetasAreEvenlySpaced()
    {
        var schedule = NoiseSchedule.FromConfig(new SchedulerConfig { BetaSchedule = BetaSchedule.Linear, BetaStart = 0.0001, BetaEnd = 0.02 });
        Reference.Close(0.0001, schedule.Betas[0], 1e-14);
        Reference.Close(0.0001 + 0.0199 / 999, schedule.Betas[1], 1e-14);
        Reference.Close(0.0001 + 0.0199 * 600 / 999, schedule.Betas[600], 1e-14);
        Reference.Close(0.02, schedule.Betas[999], 1e-14);
    }

    [Fact]
    public void SquaredCosineBetasFollowTheAlphaBarCurveAndAreCapped()
    {
        var schedule = NoiseSchedule.FromConfig(new SchedulerConfig { BetaSchedule = BetaSchedule.SquaredCosCapV2 });
        static double F(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        Reference.Close(1 - F(0.001) / F(0), schedule.Betas[0], 1e-12);
        Reference.Close(1 - F(0.5) / F(0.499), schedule.Betas[499], 1e-12);
        // ᾱ(1) = cos²(π/2) ≈ 0, so the raw last beta is ≈ 1 and the cap 0.999 applies.
        Assert.Equal(0.999, schedule.Betas[999]);
        // Away from the cap the product of (1 − β) telescopes back to ᾱ(t)/ᾱ(0).
        Reference.Close(F(0.5) / F(0), schedule.AlphasCumprod[499], 1e-12);
    }

    [Fact]
    public void AlphasCumprodIsTheRunningProductAndSigmaMatchesStableDiffusionsRange()
    {
        var schedule = NoiseSchedule.FromConfig(new SchedulerConfig());
        foreach (int t in new[] { 0, 1, 250, 981, 999 })
            Reference.Close(Reference.AlphaBar[t], schedule.AlphasCumprod[t], 1e-13);
        // The σ range every SD sampler UI quotes: σ_min ≈ 0.0292, σ_max ≈ 14.6146.
        Reference.Close(0.0292, schedule.Sigma(0), 1e-4); // absolute, for values below 1
        Reference.Close(14.6146, schedule.Sigma(999), 1e-5);
        Reference.Close(Math.Sqrt((1 - Reference.AlphaBar[500]) / Reference.AlphaBar[500]), schedule.Sigma(500), 1e-13);
    }

    [Fact]
    public void TrainedBetasReplaceTheSchedule()
    {
        var schedule = NoiseSchedule.FromConfig(new SchedulerConfig { NumTrainTimesteps = 3, TrainedBetas = [0.1, 0.2, 0.5] });
        Assert.Equal([0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5], schedule.AlphasCumprod);
    }
}
