namespace EdgeDiffusion.Compression;

/// <summary>The compression methods <c>edgediff compress</c> offers.</summary>
public enum CompressionMethod { Linear, Palettize, Prune }

/// <summary>How many look-up tables a palettized weight gets.</summary>
public enum PaletteGranularity { PerTensor, PerGroupedChannel }

/// <summary>
/// What to do to one weight: a method and its options. Serializable (it is the unit of a saved recipe); options that do
/// not apply to the method are ignored. JSON: see <see cref="CompressionRecipe"/> (snake_case names and enum values). <see cref="Validate"/> checks ranges and names the offending option.
/// </summary>
public sealed record CompressionSpec
{
    public CompressionMethod Method { get; init; }

    // ---- linear
    /// <summary>Linear: the stored integer type.</summary>
    public QuantizedType Dtype { get; init; } = QuantizedType.Int8;

    /// <summary>Linear: symmetric (zero point in the middle of the type) or asymmetric.</summary>
    public bool Symmetric { get; init; } = true;

    /// <summary>Linear: per-tensor, per-channel (output channels) or per-block (along the reduction axis).</summary>
    public QuantizationGranularity Granularity { get; init; } = QuantizationGranularity.PerChannel;

    /// <summary>Linear per-block: elements per block (32, 64 or 128).</summary>
    public int BlockSize { get; init; }

    // ---- palettize
    /// <summary>Palettize: index bits (1, 2, 3, 4, 6 or 8); the table has 2^bits entries.</summary>
    public int Bits { get; init; } = 6;

    /// <summary>Palettize: one table per tensor or per group of output channels.</summary>
    public PaletteGranularity PaletteGranularity { get; init; } = PaletteGranularity.PerTensor;

    /// <summary>Palettize per-grouped-channel: output channels sharing one table.</summary>
    public int GroupSize { get; init; } = 16;

    /// <summary>Palettize: divide each output channel by its max |w| before clustering and multiply back in the graph.</summary>
    public bool PerChannelScale { get; init; }

    /// <summary>k-means seed (palettize).</summary>
    public ulong Seed { get; init; }

    // ---- prune
    /// <summary>Prune (magnitude): fraction of weights set to zero, in [0, 1).</summary>
    public double Sparsity { get; init; }

    /// <summary>Prune N:M: keep the N largest of every M consecutive weights (0 = plain magnitude pruning).</summary>
    public int N { get; init; }

    /// <summary>Prune N:M: group length (e.g. 4 for 2:4).</summary>
    public int M { get; init; }

    /// <summary>Prune: how to store the kept values (linear or palettize); null keeps them as float32.</summary>
    public CompressionSpec? Then { get; init; }

    /// <summary>Palettize index widths.</summary>
    public static IReadOnlyList<int> PaletteBits => BitPacking.SupportedBits;

    /// <summary>Throws <see cref="InvalidArgumentException"/> naming the first bad option (as the CLI spells it).</summary>
    public CompressionSpec Validate()
    {
        if (!Enum.IsDefined(Method)) throw new InvalidArgumentException("--method", $"{(int)Method} is not a method; use linear, palettize or prune");
        switch (Method)
        {
            case CompressionMethod.Linear:
                if (!Enum.IsDefined(Dtype)) throw new InvalidArgumentException("--dtype", "use int8, uint8, int4 or uint4");
                if (Granularity == QuantizationGranularity.PerBlock && !QuantizationSpec.BlockSizes.Contains(BlockSize))
                    throw new InvalidArgumentException("--block-size", $"{BlockSize} is not supported; use {string.Join(", ", QuantizationSpec.BlockSizes)}");
                break;
            case CompressionMethod.Palettize:
                if (!PaletteBits.Contains(Bits))
                    throw new InvalidArgumentException("--bits", $"{Bits} is out of range for palettization; use {string.Join(", ", PaletteBits)}");
                if (PaletteGranularity == PaletteGranularity.PerGroupedChannel && GroupSize < 1)
                    throw new InvalidArgumentException("--group-size", $"{GroupSize} must be at least 1");
                break;
            case CompressionMethod.Prune:
                bool nm = N != 0 || M != 0;
                if (nm && (N < 1 || M < 2 || N >= M || M > 64))
                    throw new InvalidArgumentException("--n-m", $"{N}:{M} is not a valid N:M pattern; use N < M ≤ 64, e.g. 2:4");
                if (!nm && (Sparsity <= 0 || Sparsity >= 1 || double.IsNaN(Sparsity)))
                    throw new InvalidArgumentException("--sparsity", $"{Sparsity} must be in (0, 1), e.g. 0.5");
                if (Then is { Method: CompressionMethod.Prune })
                    throw new InvalidArgumentException("--then", "the kept values can be palettized or quantized, not pruned again");
                Then?.Validate();
                break;
        }
        return this;
    }

    /// <summary>One-line description, e.g. "palettize 6-bit per-grouped-channel g16".</summary>
    public override string ToString() => Method switch
    {
        CompressionMethod.Linear => $"linear {Dtype.ToString().ToLowerInvariant()} {(Symmetric ? "sym" : "asym")} " +
            (Granularity == QuantizationGranularity.PerBlock ? $"block {BlockSize}" : Granularity == QuantizationGranularity.PerTensor ? "per-tensor" : "per-channel"),
        CompressionMethod.Palettize => $"palettize {Bits}-bit " +
            (PaletteGranularity == PaletteGranularity.PerGroupedChannel ? $"per-grouped-channel g{GroupSize}" : "per-tensor") +
            (PerChannelScale ? " +scale" : ""),
        _ => (N > 0 ? $"prune {N}:{M}" : $"prune {Sparsity:0.##}") + (Then is null ? "" : $" then {Then}"),
    };
}
