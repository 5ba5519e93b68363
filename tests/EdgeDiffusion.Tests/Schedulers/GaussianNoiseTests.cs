using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class GaussianNoiseTests
{
    [Fact]
    public void SplitMix64MatchesThePublishedSequence()
    {
        // The reference sequence for seed 1234567 (Rosetta Code, "Pseudo-random numbers/Splitmix64").
        ulong state = 1234567;
        ulong[] expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821];
        foreach (ulong value in expected) Assert.Equal(value, Xoshiro256StarStar.SplitMix64(ref state));
    }

    [Fact]
    public void Xoshiro256StarStarMatchesTheReferenceFromStateOneTwoThreeFour()
    {
        // From state {1, 2, 3, 4}: the first output is rotl(2·5, 7)·9 = 1280·9 = 11520; the others follow the reference C code.
        var g = new Xoshiro256StarStar(1, 2, 3, 4);
        ulong[] expected = [11520, 0, 1509978240, 1215971899390074240];
        foreach (ulong value in expected) Assert.Equal(value, g.Next());
    }

    [Fact]
    public void FirstValuesMatchAnIndependentImplementationOfTheDocumentedAlgorithm()
    {
        // Computed by gaussian_noise_reference.py (beside this file): the documented algorithm in Python with math.log.
        var seeded = Xoshiro256StarStar.FromSeed(42);
        Assert.Equal([1546998764402558742UL, 6990951692964543102UL, 12544586762248559009UL], new[] { seeded.Next(), seeded.Next(), seeded.Next() });

        var values = new float[8];
        new GaussianNoise(42).Fill(values);
        Assert.Equal([-0.726219117641449f, -0.2111969143152237f, 0.22162270545959473f, 0.5227717161178589f,
                      0.46417731046676636f, 0.7409788966178894f, 1.4762494564056396f, 0.4707591235637665f], values);

        var zero = new float[4];
        new GaussianNoise(0).Fill(zero);
        Assert.Equal([0.5981026291847229f, 1.4634599685668945f, -0.8950525522232056f, -0.18806277215480804f], zero);
    }

    [Fact]
    public void TheStreamDoesNotDependOnHowItIsSplit()
    {
        var whole = new float[21];
        new GaussianNoise(99).Fill(whole);
        var parts = new float[21];
        var noise = new GaussianNoise(99);
        noise.Fill(parts.AsSpan(0, 7));
        noise.Fill(parts.AsSpan(7, 13));
        parts[20] = noise.Next();
        Assert.Equal(whole, parts);
        noise.Fill(Span<float>.Empty);
    }

    [Fact]
    public void MomentsAndKolmogorovSmirnovOnOneHundredThousandSamples()
    {
        const int n = 100_000;
        var samples = new float[n];
        new GaussianNoise(2024).Fill(samples);
        double mean = samples.Average(v => (double)v);
        double variance = samples.Sum(v => (v - mean) * (v - mean)) / (n - 1);
        Assert.InRange(mean, -4 / Math.Sqrt(n), 4 / Math.Sqrt(n));                          // 4 standard errors
        Assert.InRange(variance, 1 - 4 * Math.Sqrt(2.0 / n), 1 + 4 * Math.Sqrt(2.0 / n));

        Array.Sort(samples);
        double d = 0;
        for (int i = 0; i < n; i++)
        {
            double cdf = NormalCdf(samples[i]);
            d = Math.Max(d, Math.Max((i + 1.0) / n - cdf, cdf - (double)i / n));
        }
        Assert.True(d < 1.949 / Math.Sqrt(n), $"KS statistic {d} is above the 0.1% critical value"); // Kolmogorov: K(0.999) ≈ 1.949
    }

    /// <summary>Φ(x) = (1 + erf(x/√2))/2 with Abramowitz &amp; Stegun 7.1.26 (|error| ≤ 1.5e-7, far below the KS bound of 6e-3).</summary>
    private static double NormalCdf(double x)
    {
        double z = Math.Abs(x) / Math.Sqrt(2), t = 1 / (1 + 0.3275911 * z);
        double poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
        double erf = 1 - poly * Math.Exp(-z * z);
        return x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
    }

    [Fact]
    public void PortableLogAgreesWithTheRuntimeLog()
    {
        static void Check(double x)
        {
            double expected = Math.Log(x), actual = PortableMath.Log(x);
            Assert.True(Math.Abs(actual - expected) <= 1e-15 * Math.Abs(expected), $"ln({x:R}) = {expected:R}, portable {actual:R}");
        }
        for (double p = -307; p <= 308; p += 0.37) Check(Math.Pow(10, p));
        for (int i = -2000; i <= 2000; i++) Check(1 + i * 1e-4);          // around 1, where ln is small and relative error shows
        Check(1 + Math.Pow(2, -52));
        Check(1 - Math.Pow(2, -53));
        Check(Math.Sqrt(2));
        Check(Math.BitDecrement(Math.Sqrt(2)));
        var g = Xoshiro256StarStar.FromSeed(5);
        for (int i = 0; i < 100_000; i++)                                      // the polar method's s = u² + v² in (0, 1)
        {
            double u = g.NextSigned(), v = g.NextSigned(), s = u * u + v * v;
            if (s > 0 && s < 1) Check(s);
        }
        Check(double.Epsilon);                                                // subnormal
        Check(2.2250738585072014e-308 / 3);
        Assert.Equal(0, PortableMath.Log(1));
        Assert.Equal(double.NegativeInfinity, PortableMath.Log(0));
        Assert.Equal(double.PositiveInfinity, PortableMath.Log(double.PositiveInfinity));
        Assert.True(double.IsNaN(PortableMath.Log(-1)));
        Assert.True(double.IsNaN(PortableMath.Log(double.NaN)));
    }
}
