using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class EulerTests
{
    [Fact]
    public void InitNoiseSigmaIsSigmaMaxExceptForLeadingSpacing()
    {
        // diffusers: init_noise_sigma = σ_max for linspace and trailing, √(σ_max² + 1) for leading.
        var turbo = new EulerDiscreteScheduler(Reference.SdTurbo);
        turbo.SetTimesteps(1);
        Reference.Close(Reference.Sigma(999), turbo.InitNoiseSigma);
        Reference.Close(14.6146, turbo.InitNoiseSigma, 1e-5);

        var linspace = new EulerDiscreteScheduler(Reference.Sd15);
        linspace.SetTimesteps(30);
        Reference.Close(Reference.Sigma(999), linspace.InitNoiseSigma);

        // leading, 50 steps, offset 1: the first timestep is 981.
        var leading = new EulerDiscreteScheduler(Reference.Sd15 with { TimestepSpacing = TimestepSpacing.Leading });
        leading.SetTimesteps(50);
        double s981 = Reference.Sigma(981);
        Reference.Close(Math.Sqrt(s981 * s981 + 1), leading.InitNoiseSigma);
    }

    [Fact]
    public void SigmasInterpolateFractionalTimestepsAndEndAtZero()
    {
        var euler = new EulerDiscreteScheduler(Reference.Sd15);
        euler.SetTimesteps(50);
        // t_1 = 978.612...: σ linear between σ(978) and σ(979).
        double t1 = 999.0 * 48 / 49, frac = t1 - 978;
        Reference.Close(Reference.Sigma(978) + frac * (Reference.Sigma(979) - Reference.Sigma(978)), euler.Sigmas[1], 1e-12);
        Reference.Close(Reference.Sigma(0), euler.Sigmas[49], 1e-12);
        Assert.Equal(51, euler.Sigmas.Count);
        Assert.Equal(0, euler.Sigmas[50]);

        var sigmaMin = new EulerDiscreteScheduler(Reference.Sd15 with { FinalSigmasType = FinalSigmasType.SigmaMin });
        sigmaMin.SetTimesteps(10);
        Reference.Close(Reference.Sigma(0), sigmaMin.Sigmas[10], 1e-12);
    }

    [Fact]
    public void ScaleModelInputIsOneOverRootSigmaSquaredPlusOne()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo);
        euler.SetTimesteps(4); // 999, 749, 499, 249
        double s = Reference.Sigma(749);
        Reference.Close(1 / Math.Sqrt(s * s + 1), euler.ScaleModelInputFactor(1));
        // √ᾱ: the factor turns the VE latent x_0 + σ ε back into √ᾱ x_0 + √(1 − ᾱ) ε.
        Reference.Close(Math.Sqrt(Reference.AlphaBar[749]), euler.ScaleModelInputFactor(1));
    }

    [Fact]
    public void EpsilonStepIsOneEulerStepOfTheOde()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo);
        euler.SetTimesteps(4);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        // x_0 = x − σ ε, d = (x − x_0)/σ = ε, x_next = x + d (σ_next − σ) = x + ε (σ(499) − σ(749)).
        double dt = Reference.Sigma(499) - Reference.Sigma(749);
        var expected = x.Select((xi, i) => xi + eps[i] * dt).ToArray();
        euler.Step(eps, 1, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void LastStepWithZeroFinalSigmaLandsOnX0()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo);
        euler.SetTimesteps(1);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        double s = Reference.Sigma(999);
        var expected = x.Select((xi, i) => xi - s * eps[i]).ToArray();
        euler.Step(eps, 0, x);
        Reference.Close(expected, x, 1e-5);
    }

    [Fact]
    public void VPredictionConvertsToX0WithTheVpScalings()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo with { PredictionType = PredictionType.VPrediction });
        euler.SetTimesteps(4);
        float[] x = Reference.Latents, v = Reference.ModelOutput;
        // VP view: z = x·√ᾱ (√ᾱ = 1/√(σ²+1)); x_0 = √ᾱ z − √(1−ᾱ) v; then the Euler step.
        double ab = Reference.AlphaBar[749], s = Reference.Sigma(749), sNext = Reference.Sigma(499);
        var expected = x.Select((xi, i) =>
        {
            double z = xi * Math.Sqrt(ab);
            double x0 = Math.Sqrt(ab) * z - Math.Sqrt(1 - ab) * v[i];
            return xi + (xi - x0) / s * (sNext - s);
        }).ToArray();
        euler.Step(v, 1, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void SamplePredictionUsesTheOutputAsX0()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo with { PredictionType = PredictionType.Sample });
        euler.SetTimesteps(4);
        float[] x = Reference.Latents, x0 = Reference.ModelOutput;
        double s = Reference.Sigma(999), sNext = Reference.Sigma(749);
        var expected = x.Select((xi, i) => xi + (xi - x0[i]) / s * (sNext - s)).ToArray();
        euler.Step(x0, 0, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void KarrasSigmasRunFromSigmaMaxToSigmaMinWithRhoSeven()
    {
        var euler = new EulerDiscreteScheduler(Reference.Sd15 with { UseKarrasSigmas = true });
        euler.SetTimesteps(10);
        double max = Reference.Sigma(999), min = Reference.Sigma(0); // the ends of linspace spacing
        Reference.Close(max, euler.Sigmas[0], 1e-12);
        Reference.Close(min, euler.Sigmas[9], 1e-12);
        Assert.Equal(0, euler.Sigmas[10]);
        // σ_i = (max^(1/7) + i/9 (min^(1/7) − max^(1/7)))^7
        double Karras(int i) => Math.Pow(Math.Pow(max, 1 / 7.0) + i / 9.0 * (Math.Pow(min, 1 / 7.0) - Math.Pow(max, 1 / 7.0)), 7);
        for (int i = 0; i < 10; i++) Reference.Close(Karras(i), euler.Sigmas[i], 1e-12);
        // The model timesteps are the fractional t whose σ(t), log-linear between table entries, is that σ.
        Reference.Close(999, euler.Timesteps[0], 1e-9);
        Reference.Close(0, euler.Timesteps[9], 1e-9);
        double s5 = Karras(5);
        int j = Enumerable.Range(0, 999).Last(k => Reference.Sigma(k) <= s5);
        double expectedT = j + (Math.Log(s5) - Math.Log(Reference.Sigma(j))) / (Math.Log(Reference.Sigma(j + 1)) - Math.Log(Reference.Sigma(j)));
        Reference.Close(expectedT, euler.Timesteps[5], 1e-9);
        Assert.NotEqual(Math.Round(euler.Timesteps[5]), euler.Timesteps[5]); // fractional, as in diffusers
    }

    [Fact]
    public void ContinuousTimestepsForVModelsAreAQuarterLogSigma()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo with { PredictionType = PredictionType.VPrediction, TimestepType = TimestepType.Continuous });
        euler.SetTimesteps(4);
        Reference.Close(0.25 * Math.Log(Reference.Sigma(999)), euler.Timesteps[0], 1e-12);
        Reference.Close(0.25 * Math.Log(Reference.Sigma(249)), euler.Timesteps[3], 1e-12);
    }

    [Fact]
    public void AddNoiseAddsSigmaTimesNoise()
    {
        var euler = new EulerDiscreteScheduler(Reference.SdTurbo);
        euler.SetTimesteps(4);
        float[] x0 = Reference.Latents, noise = Reference.ModelOutput, noisy = new float[6];
        euler.AddNoise(x0, noise, 2, noisy);
        Reference.Close(x0.Select((v, i) => v + Reference.Sigma(499) * noise[i]).ToArray(), noisy);
    }
}

public class EulerAncestralTests
{
    [Fact]
    public void StepGoesDownToSigmaDownAndAddsSigmaUpNoise()
    {
        var scheduler = new EulerAncestralDiscreteScheduler(Reference.SdTurbo);
        scheduler.SetTimesteps(4);
        float[] x = Reference.Latents, eps = Reference.ModelOutput;
        float[] z = [0.3f, -0.2f, 1.1f, -1.7f, 0.05f, 0.8f];
        double from = Reference.Sigma(749), to = Reference.Sigma(499);
        // k-diffusion get_ancestral_step with η = 1: σ_up² = σ_to²(σ_from² − σ_to²)/σ_from², σ_down² = σ_to² − σ_up².
        double up = Math.Sqrt(to * to * (from * from - to * to) / (from * from));
        double down = Math.Sqrt(to * to - up * up);
        Reference.Close(to * to / from, down, 1e-12); // the same thing in closed form: σ_down = σ_to²/σ_from
        var expected = x.Select((xi, i) => xi + eps[i] * (down - from) + z[i] * up).ToArray();
        var noise = new FixedNoise(z);
        scheduler.Step(eps, 1, x, noise);
        Reference.Close(expected, x);
        Assert.Equal(1, noise.Calls);
    }

    [Fact]
    public void SameSeedSameImageDifferentSeedDifferentImage()
    {
        float[] Run(ulong seed)
        {
            var scheduler = new EulerAncestralDiscreteScheduler(Reference.Sd15);
            scheduler.SetTimesteps(8);
            var noise = new GaussianNoise(seed);
            var x = new float[64];
            noise.Fill(x);
            for (int i = 0; i < x.Length; i++) x[i] *= scheduler.InitNoiseSigma;
            for (int step = 0; step < 8; step++)
            {
                var output = x.Select(v => v * 0.1f).ToArray(); // a stand-in model
                scheduler.Step(output, step, x, noise);
            }
            return x;
        }
        Assert.Equal(Run(7), Run(7));
        Assert.NotEqual(Run(7), Run(8));
    }

    [Fact]
    public void NeedsANoiseSource()
    {
        var scheduler = new EulerAncestralDiscreteScheduler(Reference.Sd15);
        scheduler.SetTimesteps(2);
        Assert.Throws<ArgumentNullException>(() => scheduler.Step(new float[2], 0, new float[2]));
    }

    [Fact]
    public void IgnoresKarrasLikeDiffusers()
    {
        var scheduler = new EulerAncestralDiscreteScheduler(Reference.Sd15 with { UseKarrasSigmas = true });
        scheduler.SetTimesteps(10);
        Assert.Equal(999, scheduler.Timesteps[0]);
        Reference.Close(Reference.Sigma(888), scheduler.Sigmas[1], 1e-12); // plain linspace: 999 − 111
    }
}
