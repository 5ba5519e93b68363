namespace EdgeDiffusion.Compression;

/// <summary>Unique values of a weight tensor, sorted ascending, each with the number of times it occurs.</summary>
public sealed record WeightHistogram(float[] Values, long[] Counts)
{
    /// <summary>Total number of weights (sum of <see cref="Counts"/>).</summary>
    public long Total => Counts.Sum();
}

/// <summary>Outcome of <see cref="KMeans1D.Fit"/>.</summary>
/// <param name="Centroids">2^bits centroids, sorted ascending.</param>
/// <param name="Iterations">Lloyd iterations run.</param>
/// <param name="Converged">True when an iteration changed no assignment, the SSE improved by less than the relative
/// tolerance, or the fit was exact.</param>
/// <param name="SseHistory">Weighted SSE (nearest-centroid assignment) of the seeds (entry 0) and after each Lloyd iteration (entry t).</param>
/// <param name="Exact">True when the data had at most 2^bits distinct values, which are then the centroids.</param>
public sealed record KMeans1DResult(float[] Centroids, int Iterations, bool Converged, IReadOnlyList<double> SseHistory, bool Exact);

/// <summary>
/// k-means for scalar weights with k = 2^bits clusters (the palettes of issue 5).
/// Works on the weighted histogram of unique values: k-means++ seeding (deterministic for a seed), then Lloyd
/// iterations where each cluster is a contiguous run of the sorted unique values between centroid midpoints.
/// A value exactly on a midpoint goes to the lower centroid, in the fit and in <see cref="AssignIndices"/> alike.
/// </summary>
public static class KMeans1D
{
    public const int DefaultMaxIterations = 300;

    /// <summary>Sorts a copy of <paramref name="weights"/> and run-length encodes it (−0 and +0 are one value).</summary>
    public static WeightHistogram BuildHistogram(ReadOnlySpan<float> weights)
    {
        if (weights.IsEmpty) throw new InvalidArgumentException("weights", "is empty");
        var sorted = weights.ToArray();
        for (int i = 0; i < sorted.Length; i++)
            if (!float.IsFinite(sorted[i]))
                throw new InvalidArgumentException("weights", $"value {sorted[i]} at index {i} is not finite");
        Array.Sort(sorted);
        int unique = 1;
        for (int i = 1; i < sorted.Length; i++)
            if (sorted[i] != sorted[i - 1]) unique++;
        var values = new float[unique];
        var counts = new long[unique];
        int u = 0;
        values[0] = sorted[0];
        counts[0] = 1;
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i] != sorted[i - 1]) { u++; values[u] = sorted[i]; }
            counts[u]++;
        }
        return new WeightHistogram(values, counts);
    }

    /// <summary>Fits 2^<paramref name="bits"/> centroids (bits 1–8) to <paramref name="weights"/>.</summary>
    public static KMeans1DResult Fit(ReadOnlySpan<float> weights, int bits, ulong seed = 0, int maxIterations = DefaultMaxIterations,
        double relativeTolerance = DefaultRelativeTolerance)
    {
        CheckBits(bits);
        return Fit(BuildHistogram(weights), bits, seed, maxIterations, relativeTolerance);
    }

    /// <summary>
    /// Lloyd iterations stop once an iteration lowers the SSE by less than this fraction of it: on millions of distinct
    /// weights the assignments keep shifting by a few values for hundreds of iterations that no longer change the result.
    /// 0 runs until no assignment changes (or the iteration limit).
    /// </summary>
    public const double DefaultRelativeTolerance = 1e-4;

    /// <summary>Fits 2^<paramref name="bits"/> centroids to a histogram made by <see cref="BuildHistogram"/>.</summary>
    public static KMeans1DResult Fit(WeightHistogram histogram, int bits, ulong seed = 0, int maxIterations = DefaultMaxIterations,
        double relativeTolerance = DefaultRelativeTolerance)
    {
        CheckBits(bits);
        if (!(relativeTolerance >= 0)) throw new InvalidArgumentException("relativeTolerance", $"must be non-negative, got {relativeTolerance}");
        if (maxIterations < 0) throw new InvalidArgumentException("maxIterations", $"must be non-negative, got {maxIterations}");
        int k = 1 << bits;
        var values = histogram.Values;
        var counts = histogram.Counts;
        if (values.Length == 0 || values.Length != counts.Length)
            throw new InvalidArgumentException("histogram", "needs at least one value and one count per value");
        int n = values.Length;

        if (n <= k)
        {
            // Exact: the distinct values themselves, padded by repeating the largest (reconstruction stays exact).
            var exact = new float[k];
            values.CopyTo(exact, 0);
            for (int j = n; j < k; j++) exact[j] = values[n - 1];
            return new KMeans1DResult(exact, 0, true, [0.0], true);
        }

        var centroids = Seed(values, counts, k, seed);
        var sse = new List<double>();
        var ends = new int[k];     // cluster j holds unique values [ends[j-1], ends[j])
        var next = new int[k];
        var means = new double[k];
        var occupied = new bool[k];
        Boundaries(values, centroids, ends);
        bool converged = false;
        int iterations = 0;
        while (true)
        {
            // One pass over the runs: the SSE of the current centroids (each run is its nearest-centroid cluster)
            // and each run's weighted mean.
            double total = 0;
            int start = 0;
            for (int j = 0; j < k; j++)
            {
                int end = ends[j];
                double c = centroids[j], sw = 0, swx = 0, se = 0;
                for (int i = start; i < end; i++)
                {
                    double x = values[i], w = counts[i], d = x - c;
                    sw += w;
                    swx += w * x;
                    se += w * d * d;
                }
                total += se;
                occupied[j] = end > start;
                means[j] = occupied[j] ? swx / sw : c;
                start = end;
            }
            if (sse.Count > 0 && sse[^1] - total <= relativeTolerance * sse[^1]) converged = true;
            sse.Add(total);
            if (converged || iterations == maxIterations) break;

            // Update: each centroid moves to its run's mean; an empty run keeps its centroid (it lies between its
            // neighbours' midpoints, so the order is kept).
            for (int j = 0; j < k; j++)
                if (occupied[j]) centroids[j] = (float)means[j];
            iterations++;
            Boundaries(values, centroids, next);
            converged = next.AsSpan().SequenceEqual(ends);
            (ends, next) = (next, ends);
        }
        return new KMeans1DResult(centroids, iterations, converged, sse, false);
    }

    /// <summary>
    /// Writes for each weight the index of its nearest centroid (ties to the lower index).
    /// <paramref name="centroids"/> must be sorted ascending and hold at most 256 entries.
    /// </summary>
    public static void AssignIndices(ReadOnlySpan<float> weights, float[] centroids, Span<byte> indices)
    {
        var midpoints = Midpoints(centroids);
        if (indices.Length != weights.Length)
            throw new InvalidArgumentException("indices", $"has length {indices.Length}, expected {weights.Length} (one per weight)");
        for (int i = 0; i < weights.Length; i++)
            indices[i] = (byte)CountBelow(midpoints, weights[i]);
    }

    /// <summary>Sum over the weights of the squared distance to the nearest centroid.</summary>
    public static double Sse(ReadOnlySpan<float> weights, float[] centroids)
    {
        var midpoints = Midpoints(centroids);
        double sum = 0;
        foreach (var w in weights)
        {
            double d = w - (double)centroids[CountBelow(midpoints, w)];
            sum += d * d;
        }
        return sum;
    }

    /// <summary>Sum over a histogram of count · squared distance to the nearest centroid.</summary>
    public static double WeightedSse(WeightHistogram histogram, float[] centroids)
    {
        var midpoints = Midpoints(centroids);
        double sum = 0;
        for (int i = 0; i < histogram.Values.Length; i++)
        {
            float v = histogram.Values[i];
            double d = v - (double)centroids[CountBelow(midpoints, v)];
            sum += histogram.Counts[i] * d * d;
        }
        return sum;
    }

    static float[] Seed(float[] values, long[] counts, int k, ulong seed)
    {
        var rng = new SplitMix64(seed);
        int n = values.Length;
        var d2 = new double[n];
        var chosen = new float[k];

        // First centre: drawn in proportion to the counts.
        double total = 0;
        for (int i = 0; i < n; i++) total += counts[i];
        for (int i = 0; i < n; i++) d2[i] = counts[i];
        int first = Draw(d2, total, rng.NextDouble());
        chosen[0] = values[first];
        for (int i = 0; i < n; i++) { double d = values[i] - (double)chosen[0]; d2[i] = d * d; }

        var scores = new double[n];
        for (int c = 1; c < k; c++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++) { scores[i] = counts[i] * d2[i]; sum += scores[i]; }
            int pick = sum > 0 ? Draw(scores, sum, rng.NextDouble()) : -1;
            if (pick < 0 || d2[pick] == 0)
            {
                // Rounding left nothing to draw from: take the first value not chosen yet (n > k, so one exists).
                pick = Array.FindIndex(d2, d => d > 0);
            }
            chosen[c] = values[pick];
            for (int i = 0; i < n; i++)
            {
                double d = values[i] - (double)chosen[c];
                if (d * d < d2[i]) d2[i] = d * d;
            }
        }
        Array.Sort(chosen);
        return chosen;
    }

    static int Draw(double[] weights, double total, double u)
    {
        double target = u * total, acc = 0;
        int last = -1;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] <= 0) continue;
            acc += weights[i];
            last = i;
            if (acc > target) return i;
        }
        return last;
    }

    // ends[j] = number of unique values assigned to centroids 0..j (values ≤ midpoint j; the last takes the rest).
    static void Boundaries(float[] values, float[] centroids, int[] ends)
    {
        int k = centroids.Length;
        for (int j = 0; j < k - 1; j++)
        {
            double m = 0.5 * ((double)centroids[j] + centroids[j + 1]);
            int lo = 0, hi = values.Length; // first index with value > m
            while (lo < hi)
            {
                int mid = (lo + hi) >>> 1;
                if (values[mid] > m) hi = mid; else lo = mid + 1;
            }
            ends[j] = lo;
        }
        ends[k - 1] = values.Length;
    }

    static double[] Midpoints(float[] centroids)
    {
        ArgumentNullException.ThrowIfNull(centroids);
        if (centroids.Length is 0 or > 256)
            throw new InvalidArgumentException("centroids", $"must hold 1 to 256 values, got {centroids.Length}");
        var m = new double[centroids.Length - 1];
        for (int j = 0; j < m.Length; j++)
        {
            if (!(centroids[j] <= centroids[j + 1]))
                throw new InvalidArgumentException("centroids", $"must be sorted ascending and finite; entry {j + 1} ({centroids[j + 1]}) follows {centroids[j]}");
            m[j] = 0.5 * ((double)centroids[j] + centroids[j + 1]);
        }
        return m;
    }

    // Number of midpoints strictly below v = index of the nearest centroid, ties going to the lower one.
    static int CountBelow(double[] midpoints, double v)
    {
        int lo = 0, hi = midpoints.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (midpoints[mid] < v) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    static void CheckBits(int bits)
    {
        if (bits is < 1 or > 8)
            throw new InvalidArgumentException("bits", $"must be 1 to 8 (k = 2^bits centroids), got {bits}");
    }

    /// <summary>SplitMix64 (Steele, Lea, Flood 2014): small, fast, good enough for seeding.</summary>
    struct SplitMix64(ulong state)
    {
        ulong _state = state;

        public ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));
    }
}
