using EdgeDiffusion.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Pruning (<see cref="CompressionMethod.Prune"/>): zeroes the smallest-magnitude weights, either a fraction of the whole
/// tensor (<see cref="CompressionSpec.Sparsity"/>) or N of every M along the reduction axis (<see cref="ReductionAxis"/>),
/// and stores the result compactly: a 1-bit keep mask plus the kept values in row-major order, themselves float32 or
/// encoded further (<see cref="CompressionSpec.Then"/>: a per-tensor palette, or linear per-tensor / per-block).
/// </summary>
/// <remarks>
/// Graph: mask unpack (<see cref="IndexUnpacking"/>, 1 bit) → Cast(int32) → CumSum → Mul(mask) gives each kept weight its
/// 1-based rank among the kept ones and every pruned weight 0 → Reshape(shape) → Gather from Concat([0], values).
/// Magnitude pruning zeroes exactly round(sparsity·count) weights (at least one is kept); among equal magnitudes the
/// earlier ones (row-major) are pruned first. N:M keeps the N largest |w| of each M consecutive weights along the
/// reduction axis, ties going to the earlier weight.
/// </remarks>
public sealed class PruneWeightEncoder : IWeightEncoder
{
    readonly IWeightEncoder? _values;

    /// <param name="spec">A prune spec (validated here).</param>
    /// <param name="valueEncoder">Encodes the kept values (a 1-D <see cref="WeightUse.Standalone"/> tensor); null builds one from
    /// <c>spec.Then</c>: <see cref="PaletteWeightEncoder"/> per tensor without scale (a list of values has no channels), or
    /// linear per-tensor (per-channel becomes per-tensor for the same reason) or per-block along the list.</param>
    public PruneWeightEncoder(CompressionSpec spec, IWeightEncoder? valueEncoder = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Method != CompressionMethod.Prune)
            throw new InvalidArgumentException("--method", $"the prune encoder needs method prune, got {spec.Method.ToString().ToLowerInvariant()}");
        Spec = spec.Validate();
        _values = valueEncoder ?? spec.Then switch
        {
            null => null,
            { Method: CompressionMethod.Palettize } then => new PaletteWeightEncoder(then with { PaletteGranularity = PaletteGranularity.PerTensor, PerChannelScale = false }),
            var then => new KeptValuesLinearEncoder(then),
        };
    }

    public CompressionSpec Spec { get; }

    bool IsNM => Spec.N > 0;

    public string Description => Spec.ToString();

    /// <summary>
    /// The axis N:M groups run along: the input channels I (axis 1) of a Conv W [O, I, kh, kw] or Gemm B stored [out, in],
    /// K (axis 0) of a MatMul B [K, N], and axis 0 of a 1-D tensor.
    /// </summary>
    public static int ReductionAxis(WeightUse use)
    {
        ArgumentNullException.ThrowIfNull(use);
        return use.OutputChannelAxis == 1 || use.Shape.Count < 2 ? 0 : 1;
    }

    public string? CannotEncode(WeightUse use)
    {
        ArgumentNullException.ThrowIfNull(use);
        if (use.Shape.Count == 0 || use.Shape.Any(d => d <= 0)) return $"shape [{string.Join(", ", use.Shape)}] has no elements to prune";
        if (use.ElementCount > int.MaxValue) return $"{use.ElementCount} elements is more than one tensor can be pruned in memory";
        if (IsNM)
        {
            int axis = ReductionAxis(use);
            if (use.Shape[axis] % Spec.M != 0)
                return $"{Spec.N}:{Spec.M} needs the reduction axis {axis} (length {use.Shape[axis]}) to be a multiple of {Spec.M}";
        }
        return null;
    }

    /// <summary>Which weights are kept (true) under this spec; <paramref name="weights"/> row-major in <c>use.Shape</c>.</summary>
    public bool[] KeepMask(WeightUse use, ReadOnlySpan<float> weights)
    {
        ArgumentNullException.ThrowIfNull(use);
        if (CannotEncode(use) is { } why) throw new InvalidArgumentException(use.Name, why);
        if (weights.Length != use.ElementCount)
            throw new InvalidArgumentException(use.Name, $"shape [{string.Join(", ", use.Shape)}] holds {use.ElementCount} weights, got {weights.Length}");
        for (int i = 0; i < weights.Length; i++)
            if (!float.IsFinite(weights[i])) throw new InvalidArgumentException(use.Name, $"element {i} is {weights[i]}; only finite weights can be pruned");
        return IsNM ? NMMask(use, weights, Spec.N, Spec.M) : MagnitudeMask(weights, Spec.Sparsity);
    }

    public EncodedWeight Encode(WeightUse use, ReadOnlySpan<float> weights, Func<string, string> uniqueName)
    {
        ArgumentNullException.ThrowIfNull(uniqueName);
        var keep = KeepMask(use, weights);
        int count = weights.Length;
        var maskBits = new byte[count];
        int kept = 0;
        for (int i = 0; i < count; i++)
            if (keep[i]) { maskBits[i] = 1; kept++; }
        var values = new float[kept];
        for (int i = 0, j = 0; i < count; i++)
            if (keep[i]) values[j++] = weights[i];

        var e = new NodeEmitter(use.Name, uniqueName);
        string valuesName;
        float[] storedValues;
        EncodedWeight? inner = null;
        if (_values is null)
        {
            valuesName = e.Initializer("kept_values", TensorData.Create<float>("", [kept], values));
            storedValues = values;
        }
        else
        {
            valuesName = e.Name("kept_values");
            inner = _values.Encode(WeightUse.Standalone(valuesName, kept), values, uniqueName);
            e.Initializers.AddRange(inner.Initializers);
            e.Nodes.AddRange(inner.Nodes);
            storedValues = inner.Reconstructed;
        }

        string mask = e.Initializer("prune_mask", IndexUnpacking.Pack(maskBits, 1));
        string mask32 = e.Cast(IndexUnpacking.Emit(e, mask, 1, [count]), DT.Int32, "prune_mask_int");
        string rank = e.Op("CumSum", [mask32, e.Initializer("prune_axis", TensorData.Create<long>("", [], [0L]))], "prune_rank");
        string slot = e.Reshape(e.Op("Mul", [rank, mask32], "prune_slot_flat"), use.Shape, "prune_slot");
        string table = e.Op("Concat", [e.Initializer("prune_zero", TensorData.Create<float>("", [1], [0f])), valuesName], "prune_table", null,
            Attr.Int("axis", 0));
        e.Op("Gather", [table, slot], "prune_scatter", use.Name);

        var reconstructed = new float[count];
        for (int i = 0, j = 0; i < count; i++)
            if (keep[i]) reconstructed[i] = storedValues[j++];

        string pattern = IsNM
            ? $"{Spec.N}:{Spec.M} along axis {ReductionAxis(use)}"
            : $"magnitude {Spec.Sparsity:0.###}";
        return new EncodedWeight
        {
            OutputName = use.Name,
            Initializers = e.Initializers,
            Nodes = e.Nodes,
            Reconstructed = reconstructed,
            Method = inner is null ? "prune" : "prune+" + inner.Method,
            Bits = inner?.Bits ?? 32,
            Detail = $"{pattern}, {count - kept} of {count} zero; kept values " + (inner is null ? "float32" : $"{inner.Method} {inner.Detail}"),
            MinimumOpset = Math.Max(IndexUnpacking.MinimumOpset(1), inner?.MinimumOpset ?? 0),
        };
    }

    static bool[] MagnitudeMask(ReadOnlySpan<float> weights, double sparsity)
    {
        int count = weights.Length;
        int prune = (int)Math.Min(count - 1, Math.Round(sparsity * count, MidpointRounding.AwayFromZero));
        var keep = new bool[count];
        Array.Fill(keep, true);
        if (prune <= 0) return keep;
        var magnitudes = new float[count];
        for (int i = 0; i < count; i++) magnitudes[i] = MathF.Abs(weights[i]);
        var sorted = (float[])magnitudes.Clone();
        Array.Sort(sorted);
        float threshold = sorted[prune - 1]; // the largest pruned magnitude
        int below = 0;
        for (int i = 0; i < count; i++)
            if (magnitudes[i] < threshold) { keep[i] = false; below++; }
        int atThreshold = prune - below; // ties: prune the earliest ones
        for (int i = 0; i < count && atThreshold > 0; i++)
            if (magnitudes[i] == threshold) { keep[i] = false; atThreshold--; }
        return keep;
    }

    static bool[] NMMask(WeightUse use, ReadOnlySpan<float> weights, int n, int m)
    {
        int axis = ReductionAxis(use);
        long inner = 1;
        for (int d = axis + 1; d < use.Shape.Count; d++) inner *= use.Shape[d];
        long length = use.Shape[axis], outer = weights.Length / (length * inner);
        var keep = new bool[weights.Length];
        Span<int> order = stackalloc int[m];
        for (long o = 0; o < outer; o++)
            for (long t = 0; t < inner; t++)
                for (long g = 0; g < length; g += m)
                {
                    long first = (o * length + g) * inner + t;
                    // Insertion sort of the group's positions by |w| descending (stable: ties keep the earlier weight first).
                    for (int a = 0; a < m; a++)
                    {
                        float v = MathF.Abs(weights[(int)(first + a * inner)]);
                        int b = a;
                        while (b > 0 && MathF.Abs(weights[(int)(first + order[b - 1] * inner)]) < v) { order[b] = order[b - 1]; b--; }
                        order[b] = a;
                    }
                    for (int a = 0; a < n; a++) keep[first + order[a] * inner] = true;
                }
        return keep;
    }
}

/// <summary>
/// Linear quantization of a 1-D list of values (the kept values of a pruned weight) as one DequantizeLinear node:
/// per-tensor, or per-block along the list; a per-channel spec is taken as per-tensor (one scale per value would store
/// more than it saves).
/// </summary>
internal sealed class KeptValuesLinearEncoder : IWeightEncoder
{
    readonly QuantizedType _type;
    readonly bool _symmetric;
    readonly int _blockSize;

    public KeptValuesLinearEncoder(CompressionSpec spec)
    {
        spec.Validate();
        _type = spec.Dtype;
        _symmetric = spec.Symmetric;
        _blockSize = spec.Granularity == QuantizationGranularity.PerBlock ? spec.BlockSize : 0;
    }

    QuantizationSpec QSpec => _blockSize > 0 ? QuantizationSpec.PerBlock(_type, _symmetric, 0, _blockSize) : QuantizationSpec.PerTensor(_type, _symmetric);

    public string Description => QSpec.ToString();

    public string? CannotEncode(WeightUse use) => use.Shape.Count == 1 && use.Shape[0] > 0 ? null : "only lists of values (1-D, non-empty)";

    public EncodedWeight Encode(WeightUse use, ReadOnlySpan<float> weights, Func<string, string> uniqueName)
    {
        if (CannotEncode(use) is { } why) throw new InvalidArgumentException(use.Name, why);
        var spec = QSpec;
        var q = LinearQuantizer.Quantize(weights, [.. use.Shape], spec);
        var (data, scale, zeroPoint) = q.ToTensorProtos("");
        var e = new NodeEmitter(use.Name, uniqueName);
        var inputs = new[] { e.Initializer("quantized", data), e.Initializer("scale", scale), e.Initializer("zero_point", zeroPoint) };
        if (_blockSize > 0) e.Op("DequantizeLinear", inputs, "dequantize", use.Name, Attr.Int("axis", 0), Attr.Int("block_size", _blockSize));
        else e.Op("DequantizeLinear", inputs, "dequantize", use.Name);
        return new EncodedWeight
        {
            OutputName = use.Name,
            Initializers = e.Initializers,
            Nodes = e.Nodes,
            Reconstructed = q.Dequantize(),
            Method = "linear",
            Bits = spec.IsFourBit ? 4 : 8,
            Detail = spec.ToString(),
            MinimumOpset = _blockSize > 0 || spec.IsFourBit ? 21 : 13,
        };
    }
}
