namespace EdgeDiffusion.Compression;

/// <summary>
/// A palettized weight tensor: look-up tables of 2^bits values shared by groups of output channels, and one index per
/// weight. Weights are laid out [out, …] (row-major); channel c covers weights [c·ChannelSize, (c+1)·ChannelSize) and
/// belongs to group c / GroupSize. Reconstruction: ŵ = Luts[group·2^bits + index].
/// </summary>
public sealed class Palette
{
    Palette(int bits, int outChannels, int channelSize, int groupSize, float[] luts, byte[] indices)
    {
        Bits = bits;
        OutChannels = outChannels;
        ChannelSize = channelSize;
        GroupSize = groupSize;
        Luts = luts;
        Indices = indices;
    }

    public int Bits { get; }
    public int OutChannels { get; }
    /// <summary>Weights per output channel (product of the dimensions after the first).</summary>
    public int ChannelSize { get; }
    /// <summary>Output channels sharing one table; the last group may hold fewer.</summary>
    public int GroupSize { get; }
    public int Groups => (OutChannels + GroupSize - 1) / GroupSize;
    /// <summary>Tables, [Groups, 2^Bits] row-major, each sorted ascending.</summary>
    public float[] Luts { get; }
    /// <summary>One index per weight, in the weights' layout.</summary>
    public byte[] Indices { get; }

    /// <summary>One table for the whole tensor.</summary>
    public static Palette PerTensor(ReadOnlySpan<float> weights, ReadOnlySpan<int> shape, int bits, ulong seed = 0,
        int maxIterations = KMeans1D.DefaultMaxIterations)
        => Build(weights, shape, bits, shape.IsEmpty ? 1 : Math.Max(1, shape[0]), seed, maxIterations);

    /// <summary>
    /// Fits one table per group of <paramref name="groupSize"/> output channels with <see cref="KMeans1D"/>
    /// (seeded with <paramref name="seed"/> + group) and assigns every weight to its nearest entry.
    /// </summary>
    public static Palette Build(ReadOnlySpan<float> weights, ReadOnlySpan<int> shape, int bits, int groupSize, ulong seed = 0,
        int maxIterations = KMeans1D.DefaultMaxIterations)
    {
        if (shape.IsEmpty) throw new InvalidArgumentException("shape", "needs at least one dimension ([out, …])");
        long count = 1;
        foreach (var d in shape)
        {
            if (d <= 0) throw new InvalidArgumentException("shape", $"dimensions must be positive, got [{string.Join(", ", shape.ToArray())}]");
            count *= d;
        }
        if (count != weights.Length)
            throw new InvalidArgumentException("shape", $"[{string.Join(", ", shape.ToArray())}] holds {count} weights, got {weights.Length}");
        int outChannels = shape[0];
        if (groupSize < 1 || groupSize > outChannels)
            throw new InvalidArgumentException("groupSize", $"must be 1 to {outChannels} (output channels), got {groupSize}");
        if (bits is < 1 or > 8)
            throw new InvalidArgumentException("bits", $"must be 1 to 8, got {bits}");

        int channelSize = (int)(count / outChannels);
        int k = 1 << bits;
        int groups = (outChannels + groupSize - 1) / groupSize;
        var luts = new float[groups * k];
        var indices = new byte[weights.Length];
        for (int g = 0; g < groups; g++)
        {
            int first = g * groupSize * channelSize;
            int length = Math.Min(groupSize, outChannels - g * groupSize) * channelSize;
            var slice = weights.Slice(first, length);
            var fit = KMeans1D.Fit(slice, bits, seed + (ulong)g, maxIterations);
            fit.Centroids.CopyTo(luts, g * k);
            KMeans1D.AssignIndices(slice, fit.Centroids, indices.AsSpan(first, length));
        }
        return new Palette(bits, outChannels, channelSize, groupSize, luts, indices);
    }

    /// <summary>The weights the palette stands for.</summary>
    public float[] Reconstruct()
    {
        int k = 1 << Bits;
        var w = new float[Indices.Length];
        for (int i = 0; i < w.Length; i++)
        {
            int group = i / ChannelSize / GroupSize;
            w[i] = Luts[group * k + Indices[i]];
        }
        return w;
    }

    /// <summary>Signal-to-noise ratio of the reconstruction in dB (+∞ when exact).</summary>
    public double SnrDb(ReadOnlySpan<float> original) => WeightSnrDb(original, Reconstruct());

    /// <summary>
    /// 10·log10(Σw² / Σ(w − ŵ)²): +∞ when the two are equal.
    /// </summary>
    public static double WeightSnrDb(ReadOnlySpan<float> original, ReadOnlySpan<float> reconstructed) => WeightSnr.Db(original, reconstructed);
}
