using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

/// <summary>
/// DPM-Solver++ checked in the VP notation of the paper (arXiv:2211.01095): α_t = √ᾱ_t, s_t = √(1 − ᾱ_t), λ_t = ln(α_t/s_t),
/// written from ᾱ directly rather than from σ as the implementation does.
/// </summary>
public class DpmSolverTests
{
    private static double A(int t) => Math.Sqrt(Reference.AlphaBar[t]);
    private static double S(int t) => Math.Sqrt(1 - Reference.AlphaBar[t]);
    private static double Lambda(int t) => Math.Log(A(t) / S(t));

    private static double[] X0(float[] x, float[] eps, int t) => x.Select((xi, i) => (xi - S(t) * eps[i]) / A(t)).ToArray();

    /// <summary>DPM-Solver-1 from t to next, which is DDIM: α_next x_0 + s_next ε̂.</summary>
    private static double[] FirstOrder(float[] x, float[] eps, int t, int next)
    {
        var x0 = X0(x, eps, t);
        return x0.Select((d, i) => A(next) * d + S(next) * (x[i] - A(t) * d) / S(t)).ToArray();
    }

    /// <summary>2M midpoint update from t (previous step at prevT) to next.</summary>
    private static double[] SecondOrder(float[] x, double[] d0, double[] dPrev, int prevT, int t, int next)
    {
        double h = Lambda(next) - Lambda(t), r = (Lambda(t) - Lambda(prevT)) / h;
        return x.Select((xi, i) =>
        {
            double d1 = (d0[i] - dPrev[i]) / r;
            return S(next) / S(t) * xi - A(next) * (Math.Exp(-h) - 1) * (d0[i] + 0.5 * d1);
        }).ToArray();
    }

    private static int[] Linspace20 => Enumerable.Range(0, 20).Select(i => (int)Math.Round((20 - i) * (999.0 / 20))).ToArray();

    [Fact]
    public void TimestepsAndSigmasForTwentySteps()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15);
        dpm.SetTimesteps(20);
        Assert.Equal(Linspace20.Select(t => (double)t), dpm.Timesteps);
        Assert.Equal([999, 949, 899], Linspace20.Take(3));
        for (int i = 0; i < 20; i++) Reference.Close(Reference.Sigma(Linspace20[i]), dpm.Sigmas[i], 1e-12);
        Assert.Equal(0, dpm.Sigmas[20]);
        Assert.Equal(1f, dpm.InitNoiseSigma);
    }

    [Fact]
    public void FirstStepIsFirstOrderAndSecondIsMidpoint()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15);
        dpm.SetTimesteps(20);
        int[] t = Linspace20;
        float[] x = Reference.Latents, eps = Reference.ModelOutput;

        var expected = FirstOrder(x, eps, t[0], t[1]);
        var d0First = X0(x, eps, t[0]);
        dpm.Step(eps, 0, x);
        Reference.Close(expected, x);

        float[] eps2 = [0.2f, -0.3f, 0.9f, -1.1f, 0.4f, 0.0f];
        var d0 = X0(x, eps2, t[1]);
        expected = SecondOrder(x, d0, d0First, t[0], t[1], t[2]);
        var firstOrderWouldBe = FirstOrder(x, eps2, t[1], t[2]);
        dpm.Step(eps2, 1, x);
        Reference.Close(expected, x);
        Assert.True(Math.Abs(firstOrderWouldBe[2] - x[2]) > 1e-3, "the second step must use the history");
    }

    [Fact]
    public void LastStepWithZeroFinalSigmaIsFirstOrderOntoX0()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15);
        dpm.SetTimesteps(20);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        for (int i = 0; i < 19; i++) dpm.Step(eps, i, x);
        var expected = X0(x, eps, Linspace20[19]); // σ_next = 0: e^{−h} = 0, the update is exactly D0
        dpm.Step(eps, 19, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void LowerOrderFinalAppliesBelowFifteenStepsWhenTheFinalSigmaIsSigmaMin()
    {
        // 10 steps: linspace(0, 999, 11) → 999, 899, ..., 100 (99.9 rounds to 100); the last goes to σ_min = σ(0) in first order.
        var few = new DpmSolverMultistepScheduler(Reference.Sd15 with { FinalSigmasType = FinalSigmasType.SigmaMin });
        few.SetTimesteps(10);
        Assert.Equal(100, few.Timesteps[9]);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        for (int i = 0; i < 9; i++) few.Step(eps, i, x);
        var expected = FirstOrder(x, eps, 100, 0);
        few.Step(eps, 9, x);
        Reference.Close(expected, x);

        // 20 steps: no lower-order final, the last step is second order too.
        var many = new DpmSolverMultistepScheduler(Reference.Sd15 with { FinalSigmasType = FinalSigmasType.SigmaMin });
        many.SetTimesteps(20);
        int[] t = Linspace20;
        x = Reference.Latents;
        float[] epsLast = [0.5f, 0.5f, -0.5f, 0.25f, 0.0f, 1.0f];
        double[] dPrev = [];
        for (int i = 0; i < 19; i++)
        {
            if (i == 18) dPrev = X0(x, eps, t[18]);
            many.Step(eps, i, x);
        }
        var second = SecondOrder(x, X0(x, epsLast, t[19]), dPrev, t[18], t[19], 0);
        many.Step(epsLast, 19, x);
        Reference.Close(second, x, 1e-5);
    }

    [Fact]
    public void KarrasSpansTheWholeTrainingSigmaRange()
    {
        var dpm = (DpmSolverMultistepScheduler)SchedulerFactory.Create("dpm++2m-karras", Reference.Sd15);
        dpm.SetTimesteps(10);
        double max = Reference.Sigma(999), min = Reference.Sigma(0);
        Reference.Close(max, dpm.Sigmas[0], 1e-12);
        Reference.Close(min, dpm.Sigmas[9], 1e-12);
        Assert.Equal(0, dpm.Sigmas[10]);
        double inv(double s) => Math.Pow(s, 1 / 7.0);
        Reference.Close(Math.Pow(inv(max) + 4 / 9.0 * (inv(min) - inv(max)), 7), dpm.Sigmas[4], 1e-12);
        // Timesteps are the rounded t of each σ: the ends are the ends of the table.
        Assert.Equal(999, dpm.Timesteps[0]);
        Assert.Equal(0, dpm.Timesteps[9]);
        Assert.All(dpm.Timesteps, t => Assert.Equal(Math.Round(t), t));
        // The σ at index 4 lies between σ(t−1) and σ(t+1) of its rounded timestep.
        int t4 = (int)dpm.Timesteps[4];
        Assert.InRange(dpm.Sigmas[4], Reference.Sigma(t4 - 1), Reference.Sigma(t4 + 1));
    }

    [Fact]
    public void KarrasFirstStepIsDpmSolver1BetweenTheKarrasSigmas()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15 with { UseKarrasSigmas = true });
        dpm.SetTimesteps(10);
        double s0 = dpm.Sigmas[0], s1 = dpm.Sigmas[1];
        // In σ form (x_VP = α x_VE): α = 1/√(σ²+1); DPM-Solver-1 = DDIM from σ0 to σ1.
        double a0 = 1 / Math.Sqrt(s0 * s0 + 1), a1 = 1 / Math.Sqrt(s1 * s1 + 1);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        var expected = x.Select((xi, i) => a1 * (xi - s0 * a0 * eps[i]) / a0 + s1 * a1 * eps[i]).ToArray();
        dpm.Step(eps, 0, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void VPredictionFirstStep()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15 with { PredictionType = PredictionType.VPrediction });
        dpm.SetTimesteps(20);
        int[] t = Linspace20;
        float[] x = Reference.Latents, v = Reference.ModelOutput;
        var expected = x.Select((xi, i) =>
        {
            double x0 = A(t[0]) * xi - S(t[0]) * v[i];
            double e = A(t[0]) * v[i] + S(t[0]) * xi;
            return A(t[1]) * x0 + S(t[1]) * e;
        }).ToArray();
        dpm.Step(v, 0, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void StepsMustBeConsecutive()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15);
        dpm.SetTimesteps(10);
        dpm.Step(new float[2], 3, new float[2]); // img2img may start anywhere
        Assert.Throws<InvalidOperationException>(() => dpm.Step(new float[2], 5, new float[2]));
        dpm.SetTimesteps(10);
        dpm.Step(new float[2], 0, new float[2]);
    }

    [Fact]
    public void AddNoiseAtAStepIsTheForwardProcessAtItsTimestep()
    {
        var dpm = new DpmSolverMultistepScheduler(Reference.Sd15);
        dpm.SetTimesteps(20);
        float[] x0 = Reference.Latents, noise = Reference.ModelOutput, noisy = new float[6];
        dpm.AddNoise(x0, noise, 2, noisy); // t = 899
        Reference.Close(x0.Select((v, i) => A(899) * v + S(899) * noise[i]).ToArray(), noisy);
    }
}
