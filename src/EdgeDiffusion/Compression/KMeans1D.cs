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
        for (int i = 0; i < weights.Length; i++)
            if (!float.IsFinite(weights[i]))
                throw new InvalidArgumentException("weights", $"value {weights[i]} at index {i} is not finite");
        var sorted = SortedKeys(weights);
        int unique = 1;
        for (int i = 1; i < sorted.Length; i++)
            if (FromKey(sorted[i]) != FromKey(sorted[i - 1])) unique++;
        var values = new float[unique];
        var counts = new long[unique];
        int u = 0;
        values[0] = FromKey(sorted[0]);
        counts[0] = 1;
        for (int i = 1; i < sorted.Length; i++)
        {
            float v = FromKey(sorted[i]);
            if (v != values[u]) { u++; values[u] = v; }
            counts[u]++;
        }
        return new WeightHistogram(values, counts);
    }

    // Finite floats as unsigned keys in the same order (sign bit flipped for positives, all bits for negatives), sorted
    // by an LSD radix sort in three 11-bit passes: several times faster than a comparison sort on millions of weights,
    // which made the histogram the bulk of a palette fit.
    static uint[] SortedKeys(ReadOnlySpan<float> weights)
    {
        int n = weights.Length;
        var keys = new uint[n];
        for (int i = 0; i < n; i++)
        {
            uint b = BitConverter.SingleToUInt32Bits(weights[i]);
            keys[i] = (b & 0x80000000u) != 0 ? ~b : b | 0x80000000u;
        }
        var buffer = new uint[n];
        var counts = new int[2048];
        for (int shift = 0; shift < 32; shift += 11)
        {
            Array.Clear(counts);
            foreach (uint k in keys) counts[(k >> shift) & 2047]++;
            int sum = 0;
            for (int d = 0; d < counts.Length; d++) { int c = counts[d]; counts[d] = sum; sum += c; }
            foreach (uint k in keys) buffer[counts[(k >> shift) & 2047]++] = k;
            (keys, buffer) = (buffer, keys);
        }
        return keys;
    }

    static float FromKey(uint key) => BitConverter.UInt32BitsToSingle((key & 0x80000000u) != 0 ? key & 0x7FFFFFFFu : ~key);

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

        // Prefix sums of count, count·x and count·x² over the sorted values make every cluster's statistics two
        // subtractions, so a Lloyd iteration costs O(k log n) instead of a pass over millions of unique values.
        // Values are taken relative to the weighted median to keep the x² sums from cancelling.
        double reference = Median(values, counts);
        var pw = new double[n + 1];
        var px = new double[n + 1];
        var pxx = new double[n + 1];
        for (int i = 0; i < n; i++)
        {
            double w = counts[i], x = values[i] - reference;
            pw[i + 1] = pw[i] + w;
            px[i + 1] = px[i] + w * x;
            pxx[i + 1] = pxx[i] + w * x * x;
        }

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
            // The SSE of the current centroids (each run is its nearest-centroid cluster) and each run's weighted mean.
            double total = 0;
            int start = 0;
            for (int j = 0; j < k; j++)
            {
                int end = ends[j];
                occupied[j] = end > start;
                if (occupied[j])
                {
                    double sw = pw[end] - pw[start], sx = px[end] - px[start], sxx = pxx[end] - pxx[start];
                    double c = centroids[j] - reference;
                    total += Math.Max(0, sxx - 2 * c * sx + c * c * sw);
                    means[j] = reference + sx / sw;
                }
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

    static double Median(float[] values, long[] counts)
    {
        long total = 0, half;
        foreach (long c in counts) total += c;
        half = total / 2;
        long acc = 0;
        for (int i = 0; i < values.Length; i++)
            if ((acc += counts[i]) > half) return values[i];
        return values[^1];
    }

    const int SeedBlock = 1024;

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

        // D² weights, summed per block of values so a draw scans block sums and one block, not all n values.
        var scores = new double[n];
        var blockSums = new double[(n + SeedBlock - 1) / SeedBlock];
        for (int i = 0; i < n; i++)
        {
            double d = values[i] - (double)chosen[0];
            d2[i] = d * d;
            scores[i] = counts[i] * d2[i];
        }
        SumBlocks(scores, blockSums, 0, n);

        var sortedChosen = new List<float> { chosen[0] };
        for (int c = 1; c < k; c++)
        {
            double sum = 0;
            foreach (double b in blockSums) sum += b;
            int pick = sum > 0 ? DrawBlocks(scores, blockSums, sum, rng.NextDouble()) : -1;
            if (pick < 0 || d2[pick] == 0)
            {
                // Rounding left nothing to draw from: take the first value not chosen yet (n > k, so one exists).
                pick = Array.FindIndex(d2, d => d > 0);
            }
            float v = values[pick];
            chosen[c] = v;

            // Only values between the chosen neighbours of v can get closer to v than to their nearest centre.
            int at = sortedChosen.BinarySearch(v);
            at = at < 0 ? ~at : at;
            int lo = at > 0 ? LowerBound(values, sortedChosen[at - 1]) : 0;
            int hi = at < sortedChosen.Count ? UpperBound(values, sortedChosen[at]) : n;
            sortedChosen.Insert(at, v);
            for (int i = lo; i < hi; i++)
            {
                double d = values[i] - (double)v;
                if (d * d < d2[i])
                {
                    d2[i] = d * d;
                    scores[i] = counts[i] * d2[i];
                }
            }
            SumBlocks(scores, blockSums, lo, hi);
        }
        Array.Sort(chosen);
        return chosen;
    }

    // Recomputes the sums of the blocks overlapping [from, to) (recomputed, not adjusted, so no rounding drift builds up).
    static void SumBlocks(double[] scores, double[] blockSums, int from, int to)
    {
        if (to <= from) return;
        for (int b = from / SeedBlock; b <= (to - 1) / SeedBlock; b++)
        {
            int start = b * SeedBlock, end = Math.Min(scores.Length, start + SeedBlock);
            double s = 0;
            for (int i = start; i < end; i++) s += scores[i];
            blockSums[b] = s;
        }
    }

    // The first index whose running sum of positive scores exceeds u·total, skipping whole blocks.
    static int DrawBlocks(double[] scores, double[] blockSums, double total, double u)
    {
        double target = u * total, acc = 0;
        for (int b = 0; b < blockSums.Length; b++)
        {
            if (acc + blockSums[b] <= target) { acc += blockSums[b]; continue; }
            int start = b * SeedBlock, end = Math.Min(scores.Length, start + SeedBlock);
            for (int i = start; i < end; i++)
            {
                if (scores[i] <= 0) continue;
                acc += scores[i];
                if (acc > target) return i;
            }
        }
        // Rounding ran past the end: the last value with a positive score.
        for (int i = scores.Length - 1; i >= 0; i--)
            if (scores[i] > 0) return i;
        return -1;
    }

    static int LowerBound(float[] values, float v)
    {
        int lo = 0, hi = values.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (values[mid] < v) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    static int UpperBound(float[] values, float v)
    {
        int lo = 0, hi = values.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (values[mid] <= v) lo = mid + 1; else hi = mid;
        }
        return lo;
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
