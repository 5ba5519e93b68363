using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class LcmTests
{
    private static double A(int t) => Math.Sqrt(Reference.AlphaBar[t]);
    private static double S(int t) => Math.Sqrt(1 - Reference.AlphaBar[t]);

    [Fact]
    public void BoundaryScalingsMakeTheModelTheIdentityAtZero()
    {
        var lcm = new LcmScheduler(Reference.Sd15);
        // σ_data = 0.5, τ = 10: c_skip = 0.25/((10t)² + 0.25), c_out = 10t/√((10t)² + 0.25).
        var (skip, cOut) = lcm.BoundaryScalings(999);
        Reference.Close(0.25 / (9990.0 * 9990 + 0.25), skip, 1e-12);
        Reference.Close(9990 / Math.Sqrt(9990.0 * 9990 + 0.25), cOut, 1e-12);
        (skip, cOut) = lcm.BoundaryScalings(19);
        Reference.Close(0.25 / 36100.25, skip, 1e-12); // 190² + 0.25
        Assert.Equal((1.0, 0.0), lcm.BoundaryScalings(0));
        var (skipScaled, _) = new LcmScheduler(Reference.Sd15 with { TimestepScaling = 1 }).BoundaryScalings(1);
        Reference.Close(0.25 / 1.25, skipScaled, 1e-12);
    }

    [Fact]
    public void StepDenoisesThenRenoisesToTheNextTimestep()
    {
        var lcm = new LcmScheduler(Reference.Sd15);
        lcm.SetTimesteps(4); // 999, 759, 499, 259
        float[] x = Reference.Latents, eps = Reference.ModelOutput, z = [0.1f, 0.2f, -0.3f, 0.4f, -0.5f, 0.6f];
        double scaled = 9990, skip = 0.25 / (scaled * scaled + 0.25), cOut = scaled / Math.Sqrt(scaled * scaled + 0.25);
        var expected = x.Select((xi, i) =>
        {
            double x0 = (xi - S(999) * eps[i]) / A(999);
            double denoised = cOut * x0 + skip * xi;
            return A(759) * denoised + S(759) * z[i];
        }).ToArray();
        lcm.Step(eps, 0, x, new FixedNoise(z));
        Reference.Close(expected, x);
        Assert.Equal(1f, lcm.InitNoiseSigma);
        Assert.Equal(1f, lcm.ScaleModelInputFactor(0));
    }

    [Fact]
    public void SkipConnectionWeighsInWhenTheScaledTimestepIsSmall()
    {
        // With τ = 0.001 the scaled timestep at t = 499 is 0.499: c_skip = 0.25/(0.499² + 0.25) ≈ 0.501, c_out ≈ 0.706.
        var lcm = new LcmScheduler(Reference.Sd15 with { TimestepScaling = 0.001 });
        lcm.SetTimesteps(4); // 999, 759, 499, 259
        float[] x = Reference.Latents, eps = Reference.ModelOutput, z = [0.3f, -0.1f, 0.2f, 0.0f, 1.0f, -1.0f];
        double scaled = 0.499, skip = 0.25 / (scaled * scaled + 0.25), cOut = scaled / Math.Sqrt(scaled * scaled + 0.25);
        Reference.Close(0.50100, skip, 1e-4);
        var expected = x.Select((xi, i) =>
        {
            double denoised = cOut * (xi - S(499) * eps[i]) / A(499) + skip * xi;
            return A(259) * denoised + S(259) * z[i];
        }).ToArray();
        lcm.Step(eps, 2, x, new FixedNoise(z));
        Reference.Close(expected, x);
    }

    [Fact]
    public void LastStepReturnsTheDenoisedSampleWithoutNoise()
    {
        var lcm = new LcmScheduler(Reference.Sd15 with { PredictionType = PredictionType.VPrediction });
        lcm.SetTimesteps(4);
        float[] x = Reference.Latents, v = Reference.ModelOutput;
        double scaled = 2590, skip = 0.25 / (scaled * scaled + 0.25), cOut = scaled / Math.Sqrt(scaled * scaled + 0.25);
        var expected = x.Select((xi, i) => cOut * (A(259) * xi - S(259) * v[i]) + skip * xi).ToArray();
        var noise = new FixedNoise(9f);
        lcm.Step(v, 3, x, noise);
        Reference.Close(expected, x);
        Assert.Equal(0, noise.Calls);
    }
}

public class PndmTests
{
    private static double Ab(int t) => Reference.AlphaBar[t];

    /// <summary>PNDM eq. 11, the transfer φ(x, ε, t → prev).</summary>
    private static double Transfer(double x, double eps, int t, int prev)
    {
        double at = Ab(t), ap = prev >= 0 ? Ab(prev) : Ab(0);
        return Math.Sqrt(ap / at) * x - (ap - at) * eps / (at * Math.Sqrt(1 - ap) + Math.Sqrt(at * (1 - at) * ap));
    }

    [Fact]
    public void TransferEqualsDdimForTheSameEpsilon()
    {
        // Sanity of the reference itself: PNDM's transfer is algebraically DDIM (η = 0).
        double x = 0.7, eps = -0.3;
        double x0 = (x - Math.Sqrt(1 - Ab(981)) * eps) / Math.Sqrt(Ab(981));
        Reference.Close(Math.Sqrt(Ab(961)) * x0 + Math.Sqrt(1 - Ab(961)) * eps, Transfer(x, eps, 981, 961), 1e-12);
    }

    [Fact]
    public void FirstStepsFollowPlmsWithTheRedoneSecondCall()
    {
        // Order 4: diffusers' PLMS exactly (leading spacing, where the next planned timestep is t − N div steps).
        var pndm = new PndmScheduler(Reference.Sd15, order: 4);
        pndm.SetTimesteps(50); // 981, 961, 961, 941, 921, 901, ...
        float[] x = [0.5f, -1.0f], start = [0.5f, -1.0f];
        float[][] e = [[0.1f, 0.2f], [0.3f, -0.1f], [-0.2f, 0.4f], [0.05f, 0.05f], [0.6f, -0.6f], [0.0f, 1.0f]];
        double[] Expect(Func<int, double> f) => [f(0), f(1)];

        // Call 0 (t = 981): ε_0 from 981 to 961.
        var expected = Expect(i => Transfer(x[i], e[0][i], 981, 961));
        pndm.Step(e[0], 0, x);
        Reference.Close(expected, x);

        // Call 1 (listed as 961): redo 981 → 961 from the starting sample with (ε_0 + ε_1)/2.
        expected = Expect(i => Transfer(start[i], (e[0][i] + (double)e[1][i]) / 2, 981, 961));
        pndm.Step(e[1], 1, x);
        Reference.Close(expected, x);

        // Call 2 (961 → 941): history ε_0, ε_2 → (3 ε_2 − ε_0)/2.
        var x2 = x.ToArray();
        expected = Expect(i => Transfer(x2[i], (3.0 * e[2][i] - e[0][i]) / 2, 961, 941));
        pndm.Step(e[2], 2, x);
        Reference.Close(expected, x);

        // Call 3 (941 → 921): (23 ε_3 − 16 ε_2 + 5 ε_0)/12.
        var x3 = x.ToArray();
        expected = Expect(i => Transfer(x3[i], (23.0 * e[3][i] - 16.0 * e[2][i] + 5.0 * e[0][i]) / 12, 941, 921));
        pndm.Step(e[3], 3, x);
        Reference.Close(expected, x);

        // Call 4 (921 → 901): (55 ε_4 − 59 ε_3 + 37 ε_2 − 9 ε_0)/24.
        var x4 = x.ToArray();
        expected = Expect(i => Transfer(x4[i], (55.0 * e[4][i] - 59.0 * e[3][i] + 37.0 * e[2][i] - 9.0 * e[0][i]) / 24, 921, 901));
        pndm.Step(e[4], 4, x);
        Reference.Close(expected, x);

        // Call 5 (901 → 881): the oldest drops out: ε_5, ε_4, ε_3, ε_2.
        var x5 = x.ToArray();
        expected = Expect(i => Transfer(x5[i], (55.0 * e[5][i] - 59.0 * e[4][i] + 37.0 * e[3][i] - 9.0 * e[2][i]) / 24, 901, 881));
        pndm.Step(e[5], 5, x);
        Reference.Close(expected, x);
    }

    [Fact]
    public void DefaultOrderTwoKeepsTheTwoStepCombination()
    {
        // The default caps PLMS at Adams–Bashforth order 2: from call 3 on, (3 ε_n − ε_{n−1})/2.
        var pndm = new PndmScheduler(Reference.Sd15);
        pndm.SetTimesteps(8);
        Assert.Equal(1, pndm.Order);
        pndm.SetTimesteps(50);
        Assert.Equal(2, pndm.Order);
        float[] x = [0.5f, -1.0f];
        float[][] e = [[0.1f, 0.2f], [0.3f, -0.1f], [-0.2f, 0.4f], [0.05f, 0.05f], [0.6f, -0.6f]];
        for (int k = 0; k < 3; k++) pndm.Step(e[k], k, x);
        var x3 = x.ToArray();
        pndm.Step(e[3], 3, x);
        Reference.Close([Transfer(x3[0], (3.0 * e[3][0] - e[2][0]) / 2, 941, 921), Transfer(x3[1], (3.0 * e[3][1] - e[2][1]) / 2, 941, 921)], x);
        Assert.Throws<InvalidArgumentException>(() => new PndmScheduler(Reference.Sd15, order: 5));
    }

    [Fact]
    public void BorrowedConfigEndsAtAlphaOne()
    {
        // An Euler config (no set_alpha_to_one) ends the last transfer at ᾱ = 1, a clean sample, as the Euler it came from.
        var pndm = new PndmScheduler(Reference.Sd15 with { ClassName = "EulerDiscreteScheduler", SetAlphaToOne = null });
        pndm.SetTimesteps(1);
        float[] x = [0.25f], eps = [0.5f];
        double at = Ab(1);
        pndm.Step(eps, 0, x);
        Reference.Close((0.25 - Math.Sqrt(1 - at) * 0.5) / Math.Sqrt(at), x[0]);
    }

    [Fact]
    public void Img2ImgStartsAfterTheDuplicateWithoutRedo()
    {
        // 10 steps (901, 801, 801, 701, ...): strength 0.5 starts at spaced step 5 (401), call index 6, and steps 401 → 301.
        var pndm = new PndmScheduler(Reference.Sd15);
        pndm.SetTimesteps(10);
        int start = pndm.StartIndexForStrength(0.5);
        Assert.Equal(6, start);
        Assert.Equal(401, pndm.Timesteps[start]);
        Assert.Equal(0, pndm.StartIndexForStrength(1.0));
        Assert.Equal(pndm.Timesteps.Count, pndm.StartIndexForStrength(0.0));
        float[] x = [0.5f], eps = [0.2f];
        pndm.Step(eps, start, x);
        Reference.Close(Transfer(0.5, 0.2, 401, 301), x[0]);
        var x1 = x[0];
        pndm.Step(eps, start + 1, x); // second call: order 2 with equal outputs, no redo
        Reference.Close(Transfer(x1, 0.2, 301, 201), x[0]);
    }

    [Fact]
    public void LastStepUsesAlphaZeroForSd15()
    {
        // set_alpha_to_one false: past t = 1 the transfer targets ᾱ_0. One step: t = 1, prev = 1 − 1000.
        var pndm = new PndmScheduler(Reference.Sd15);
        pndm.SetTimesteps(1);
        float[] x = [0.25f], eps = [0.5f];
        var expected = Transfer(0.25, 0.5, 1, -999);
        pndm.Step(eps, 0, x);
        Reference.Close(expected, x[0]);
    }
}
