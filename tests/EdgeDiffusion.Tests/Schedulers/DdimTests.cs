using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class DdimTests
{
    private static double[] ClosedForm(float[] x, float[] eps, double alphaT, double alphaPrev)
    {
        // DDIM eq. 12 with η = 0: x_prev = √ᾱ_prev · (x − √(1−ᾱ_t) ε)/√ᾱ_t + √(1−ᾱ_prev) · ε.
        return x.Select((xi, i) =>
        {
            double x0 = (xi - Math.Sqrt(1 - alphaT) * eps[i]) / Math.Sqrt(alphaT);
            return Math.Sqrt(alphaPrev) * x0 + Math.Sqrt(1 - alphaPrev) * eps[i];
        }).ToArray();
    }

    [Fact]
    public void EtaZeroStepIsTheClosedForm()
    {
        var ddim = new DdimScheduler(Reference.Sd15);
        ddim.SetTimesteps(50);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        var expected = ClosedForm(x, eps, Reference.AlphaBar[981], Reference.AlphaBar[961]);
        ddim.Step(eps, 0, x);
        Reference.Close(expected, x);
        Assert.Equal(1f, ddim.InitNoiseSigma);
        Assert.Equal(1f, ddim.ScaleModelInputFactor(0));
    }

    [Fact]
    public void LastStepUsesTheFinalAlpha()
    {
        float[] eps = Reference.ModelOutput;
        // t = 1, prev = 1 − 20 < 0: ᾱ_prev = ᾱ_0 when set_alpha_to_one is false (SD 1.5) ...
        var sd = new DdimScheduler(Reference.Sd15);
        sd.SetTimesteps(50);
        float[] x = Reference.Latents;
        var expected = ClosedForm(x, eps, Reference.AlphaBar[1], Reference.AlphaBar[0]);
        sd.Step(eps, 49, x);
        Reference.Close(expected, x);

        // ... and 1 when it is true (DDIM's default), so the result is the x_0 prediction itself.
        var one = new DdimScheduler(Reference.Sd15 with { SetAlphaToOne = null });
        one.SetTimesteps(50);
        x = Reference.Latents;
        var x0 = x.Select((xi, i) => (xi - Math.Sqrt(1 - Reference.AlphaBar[1]) * eps[i]) / Math.Sqrt(Reference.AlphaBar[1])).ToArray();
        one.Step(eps, 49, x);
        Reference.Close(x0, x);
    }

    [Fact]
    public void VPredictionGivesX0AndEpsilonFromV()
    {
        var ddim = new DdimScheduler(Reference.Sd15 with { PredictionType = PredictionType.VPrediction });
        ddim.SetTimesteps(50);
        float[] x = Reference.Latents, v = Reference.ModelOutput;
        double a = Math.Sqrt(Reference.AlphaBar[981]), s = Math.Sqrt(1 - Reference.AlphaBar[981]), ap = Reference.AlphaBar[961];
        // v = a ε − s x_0 and x = a x_0 + s ε ⇒ x_0 = a x − s v, ε = a v + s x.
        var expected = x.Select((xi, i) => Math.Sqrt(ap) * (a * xi - s * v[i]) + Math.Sqrt(1 - ap) * (a * v[i] + s * xi)).ToArray();
        ddim.Step(v, 0, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void SamplePredictionRecoversEpsilon()
    {
        var ddim = new DdimScheduler(Reference.Sd15 with { PredictionType = PredictionType.Sample });
        ddim.SetTimesteps(50);
        float[] x = Reference.Latents, x0 = Reference.ModelOutput;
        double a = Math.Sqrt(Reference.AlphaBar[981]), s = Math.Sqrt(1 - Reference.AlphaBar[981]), ap = Reference.AlphaBar[961];
        var expected = x.Select((xi, i) => Math.Sqrt(ap) * x0[i] + Math.Sqrt(1 - ap) * (xi - a * x0[i]) / s).ToArray();
        ddim.Step(x0, 0, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void EtaAddsThePosteriorNoise()
    {
        var ddim = new DdimScheduler(Reference.Sd15, eta: 1.0);
        ddim.SetTimesteps(50);
        float[] x = Reference.Latents, eps = Reference.ModelOutput, z = [1f, -1f, 0.5f, 2f, -0.25f, 0f];
        double at = Reference.AlphaBar[961], ap = Reference.AlphaBar[941];
        double sigma = Math.Sqrt((1 - ap) / (1 - at)) * Math.Sqrt(1 - at / ap);
        var expected = x.Select((xi, i) =>
        {
            double x0 = (xi - Math.Sqrt(1 - at) * eps[i]) / Math.Sqrt(at);
            return Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap - sigma * sigma) * eps[i] + sigma * z[i];
        }).ToArray();
        ddim.Step(eps, 1, x, new FixedNoise(z));
        Reference.Close(expected, x);
        Assert.Throws<InvalidArgumentException>(() => new DdimScheduler(Reference.Sd15, eta: 1.5));
    }

    [Fact]
    public void ClipSampleClampsX0WhenNotSetToFalse()
    {
        // clip_sample absent from a DDIM config → DDIM's default, true: x_0 is clamped to ±1 (ε is still the model's).
        var ddim = new DdimScheduler(Reference.Sd15 with { ClassName = "DDIMScheduler", ClipSample = null, SetAlphaToOne = true });
        ddim.SetTimesteps(50);
        float[] x = [3f, -3f, 0.1f], eps = [0f, 0f, 0f];
        // x_0 = x/√ᾱ_1 → clamped to 1, −1, and 0.1/√ᾱ_1 unchanged; ᾱ_prev = 1 so the result is x_0.
        ddim.Step(eps, 49, x);
        Reference.Close([1.0, -1.0, 0.1 / Math.Sqrt(Reference.AlphaBar[1])], x);
    }

    [Theory]
    [InlineData("EulerDiscreteScheduler")]
    [InlineData("PNDMScheduler")]
    public void BorrowedConfigWithoutClipSampleDoesNotClamp(string className)
    {
        // A config written for another class never chose clip_sample: latents of any range pass unclamped (tiny-shapes'
        // Euler config under DDIM drew noise while ±1 clamping applied).
        var ddim = new DdimScheduler(Reference.Sd15 with { ClassName = className, ClipSample = null, SetAlphaToOne = true });
        ddim.SetTimesteps(50);
        float[] x = [3f, -3f], eps = [0f, 0f];
        ddim.Step(eps, 49, x);
        double a = Math.Sqrt(Reference.AlphaBar[1]);
        Reference.Close([3 / a, -3 / a], x);
    }

    [Fact]
    public void LinspaceStepsLandOnTheNextPlannedTimestep()
    {
        // linspace, 20 steps: 999, 946, 894, ... The step from 999 goes to ᾱ_946 (diffusers: 999 − 50 = 949).
        var config = Reference.Sd15 with { ClassName = "EulerDiscreteScheduler", TimestepSpacing = TimestepSpacing.Linspace };
        var ddim = new DdimScheduler(config);
        ddim.SetTimesteps(20);
        Assert.Equal(999, ddim.Timesteps[0]);
        Assert.Equal(946, ddim.Timesteps[1]);
        float[] x = [0.8f], eps = [0.3f];
        double at = Reference.AlphaBar[999], ap = Reference.AlphaBar[946];
        double x0 = (0.8 - Math.Sqrt(1 - at) * 0.3) / Math.Sqrt(at);
        ddim.Step(eps, 0, x);
        Reference.Close(Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap) * 0.3, x[0]);
    }

    [Fact]
    public void AddNoiseIsTheForwardProcess()
    {
        var ddim = new DdimScheduler(Reference.Sd15);
        ddim.SetTimesteps(50);
        float[] x0 = Reference.Latents, noise = Reference.ModelOutput, noisy = new float[6];
        ddim.AddNoise(x0, noise, 10, noisy); // t = 981 − 200 = 781
        double ab = Reference.AlphaBar[781];
        Reference.Close(x0.Select((v, i) => Math.Sqrt(ab) * v + Math.Sqrt(1 - ab) * noise[i]).ToArray(), noisy);
    }
}
