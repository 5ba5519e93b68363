using EdgeDiffusion.Compression;

namespace EdgeDiffusion.Tests.Compression;

public class KMeans1DTests
{
    // Brute force: squared distance of each weight to its nearest centroid, summed.
    static double BruteSse(float[] weights, float[] centroids) =>
        weights.Sum(w => centroids.Min(c => ((double)w - c) * ((double)w - c)));

    static float[] Gaussians(int count, double[] centres, double sigma, int seed)
    {
        var rng = new Random(seed);
        var w = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double z = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            w[i] = (float)(centres[i % centres.Length] + sigma * z);
        }
        return w;
    }

    [Fact]
    public void HistogramCountsRuns()
    {
        var h = KMeans1D.BuildHistogram([3f, -1f, 3f, 0.5f, -1f, 3f]);
        Assert.Equal(new[] { -1f, 0.5f, 3f }, h.Values);
        Assert.Equal(new long[] { 2, 1, 3 }, h.Counts);
        Assert.Equal(6, h.Total);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(8)]
    public void ExactWhenFewDistinctValues(int bits)
    {
        int k = 1 << bits;
        foreach (int distinct in new[] { 1, Math.Max(1, k / 2 + 1), k })
        {
            var levels = Enumerable.Range(0, distinct).Select(i => (float)(i * 0.37 - 2.0)).ToArray();
            var rng = new Random(bits * 100 + distinct);
            var weights = Enumerable.Range(0, 5000).Select(_ => levels[rng.Next(distinct)]).ToArray();
            weights[0..distinct].AsSpan().Clear();
            for (int i = 0; i < distinct; i++) weights[i] = levels[i]; // every level present

            var r = KMeans1D.Fit(weights, bits, seed: 7);
            Assert.True(r.Exact);
            Assert.Equal(k, r.Centroids.Length);
            Assert.Equal(levels, r.Centroids[..distinct]);
            Assert.All(r.Centroids[distinct..], c => Assert.Equal(levels[^1], c));

            var idx = new byte[weights.Length];
            KMeans1D.AssignIndices(weights, r.Centroids, idx);
            for (int i = 0; i < weights.Length; i++) Assert.Equal(weights[i], r.Centroids[idx[i]]);
        }
    }

    [Fact]
    public void SameSeedSameResult()
    {
        var w = Gaussians(20000, [-1, 0, 2], 0.3, 5);
        var a = KMeans1D.Fit(w, 3, seed: 42);
        var b = KMeans1D.Fit(w, 3, seed: 42);
        Assert.Equal(a.Centroids, b.Centroids);
        Assert.Equal(a.SseHistory, b.SseHistory);
    }

    [Fact]
    public void FindsWellSeparatedCentres()
    {
        double[] centres = [-5, 1, 8];
        var w = Gaussians(30000, centres, 0.1, 11);
        var r = KMeans1D.Fit(w, 2, seed: 3);
        Assert.True(r.Converged);
        // 4 centroids for 3 clusters: every true centre has a centroid within 0.1, and every centroid lies within
        // 0.5 of a true centre (the fourth splits one cluster, landing near ±0.8σ of it).
        foreach (var c in centres) Assert.Contains(r.Centroids, x => Math.Abs(x - c) < 0.1);
        Assert.All(r.Centroids, x => Assert.True(centres.Min(c => Math.Abs(x - c)) < 0.5, $"centroid {x}"));
        Assert.Equal(r.Centroids.OrderBy(x => x), r.Centroids);
    }

    [Fact]
    public void SseNeverIncreasesOverIterations()
    {
        var w = Gaussians(5000, [-1, -0.2, 0.3, 1.5], 0.4, 17);
        var h = KMeans1D.BuildHistogram(w);
        var previous = double.PositiveInfinity;
        var full = KMeans1D.Fit(h, 3, seed: 9);
        Assert.True(full.Iterations > 1, "the test needs several iterations");
        for (int t = 0; t <= full.Iterations; t++)
        {
            var r = KMeans1D.Fit(h, 3, seed: 9, maxIterations: t);
            double sse = BruteSse(w, r.Centroids);
            Assert.Equal(sse, KMeans1D.Sse(w, r.Centroids), sse * 1e-9);
            Assert.Equal(sse, r.SseHistory[^1], sse * 1e-9);
            Assert.True(sse <= previous * (1 + 1e-9), $"iteration {t}: {sse} > {previous}");
            previous = sse;
        }
        Assert.Equal(full.Centroids, KMeans1D.Fit(h, 3, seed: 9, maxIterations: full.Iterations).Centroids);
    }

    [Fact]
    public void AssignIndicesPicksNearestWithTiesLow()
    {
        float[] c = [-1f, 0f, 2f];
        var idx = new byte[6];
        KMeans1D.AssignIndices([-3f, -0.5f, -0.4f, 1f, 1.1f, 9f], c, idx);
        // -0.5 is halfway between -1 and 0 → lower; 1 is halfway between 0 and 2 → lower.
        Assert.Equal(new byte[] { 0, 0, 1, 1, 2, 2 }, idx);
    }

    [Fact]
    public void RejectsBadInput()
    {
        Assert.Equal("bits", Assert.Throws<InvalidArgumentException>(() => KMeans1D.Fit([1f, 2f], 0)).Argument);
        Assert.Equal("bits", Assert.Throws<InvalidArgumentException>(() => KMeans1D.Fit([1f, 2f], 9)).Argument);
        Assert.Equal("weights", Assert.Throws<InvalidArgumentException>(() => KMeans1D.Fit([], 2)).Argument);
        Assert.Equal("weights", Assert.Throws<InvalidArgumentException>(() => KMeans1D.Fit([1f, float.NaN], 2)).Argument);
        Assert.Equal("centroids", Assert.Throws<InvalidArgumentException>(
            () => KMeans1D.AssignIndices([1f], [2f, 1f], new byte[1])).Argument);
    }

    [Fact]
    public void FourMillionWeightsComplete()
    {
        var w = Gaussians(4_000_000, [0], 0.02, 23);
        var r = KMeans1D.Fit(w, 4, seed: 1);
        Assert.Equal(16, r.Centroids.Length);
        var idx = new byte[w.Length];
        KMeans1D.AssignIndices(w, r.Centroids, idx);
        Assert.All(r.Centroids.Zip(r.Centroids.Skip(1)), p => Assert.True(p.First < p.Second));
        // 16 levels on a Gaussian: Max's (1960) optimal quantizer has mean squared error 0.009497·σ² per weight; the
        // relative-SSE stopping rule must land within 2 % of it (and long before the iteration limit).
        Assert.True(r.Converged);
        Assert.True(r.Iterations < KMeans1D.DefaultMaxIterations, $"{r.Iterations} iterations");
        Assert.InRange(r.SseHistory[^1] / w.Length / (0.02 * 0.02), 0.009497 * 0.98, 0.009497 * 1.02);
    }
}
