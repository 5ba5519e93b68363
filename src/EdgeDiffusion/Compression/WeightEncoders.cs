namespace EdgeDiffusion.Compression;

/// <summary>The encoder for each <see cref="CompressionMethod"/>.</summary>
public static class WeightEncoders
{
    /// <summary>The encoder that applies <paramref name="spec"/> (validated first).</summary>
    public static IWeightEncoder Create(CompressionSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        return spec.Method switch
        {
            CompressionMethod.Linear => new LinearWeightEncoder(spec),
            CompressionMethod.Palettize => new PaletteWeightEncoder(spec),
            CompressionMethod.Prune => new PruneWeightEncoder(spec),
            _ => throw new InvalidArgumentException("--method", $"{spec.Method} is not a method; use linear, palettize or prune"),
        };
    }
}
