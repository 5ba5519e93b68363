namespace EdgeDiffusion.Compression;

/// <summary>How faithful compressed weights are: SNR in dB = 10·log10(Σw² / Σ(w − ŵ)²), +∞ for an exact reconstruction.</summary>
public static class WeightSnr
{
    public static double Db(ReadOnlySpan<float> original, ReadOnlySpan<float> reconstructed)
    {
        if (original.Length != reconstructed.Length)
            throw new InvalidArgumentException("reconstructed", $"has {reconstructed.Length} values, the original {original.Length}");
        double signal = 0, noise = 0;
        for (int i = 0; i < original.Length; i++)
        {
            double w = original[i], e = w - reconstructed[i];
            signal += w * w;
            noise += e * e;
        }
        return noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(signal / noise);
    }
}
