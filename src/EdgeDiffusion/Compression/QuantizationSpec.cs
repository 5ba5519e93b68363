namespace EdgeDiffusion.Compression;

/// <summary>The integer type quantized weights are stored as (the ONNX QuantizeLinear/DequantizeLinear y/x type).</summary>
public enum QuantizedType { Int8, UInt8, Int4, UInt4 }

/// <summary>
/// How many scale/zero-point pairs a tensor gets, with the shapes ONNX DequantizeLinear (opset 21) gives them:
/// per-tensor: one scalar (shape []); per-channel: a 1-D tensor of length shape[axis];
/// per-block: the input's rank with shape[axis] replaced by ceil(shape[axis] / blockSize) (the last block may be partial).
/// </summary>
public enum QuantizationGranularity { PerTensor, PerChannel, PerBlock }

/// <summary>
/// What <see cref="LinearQuantizer"/> does to one weight tensor.
/// <para>Symmetric: the zero point is the middle of the type (0 for int8/int4, 128 for uint8, 8 for uint4) and the
/// range used is symmetric, q − zp ∈ [−127, 127] (8-bit) or [−7, 7] (4-bit), so scale = max|w| / 127 (or / 7);
/// the most negative code (−128, −8; or 0 for unsigned) is never produced.</para>
/// <para>Asymmetric: the full type range [qmin, qmax]; the float range is widened to include 0
/// (rmin = min(0, min w), rmax = max(0, max w)) so 0 is exact; scale = (rmax − rmin) / (qmax − qmin),
/// zp = round_half_even(qmin − rmin / scale) clamped to [qmin, qmax].</para>
/// <para>A group whose values are all 0 gets scale 1 (any scale represents it exactly); a group whose scale would
/// underflow to 0 or a subnormal gets the smallest normal float (1.17549435e-38), so no scale is ever 0 or NaN.</para>
/// <para>Axis: per-channel and per-block need it explicitly; use <see cref="ConvOutputChannelAxis"/> (0, O of Conv W [O,I,kh,kw])
/// or <see cref="MatMulOutputAxis"/> (1, N of MatMul B [K,N]) for per-channel, and usually the reduction axis
/// (<see cref="MatMulReductionAxis"/>, K) for per-block. Negative axes count from the end as in ONNX.</para>
/// </summary>
public sealed record QuantizationSpec
{
    /// <summary>Output channels of a Conv weight [O, I, kh, kw].</summary>
    public const int ConvOutputChannelAxis = 0;

    /// <summary>Output columns (N) of a MatMul B [K, N] weight.</summary>
    public const int MatMulOutputAxis = 1;

    /// <summary>Reduction axis (K) of a MatMul B [K, N] weight: the usual block axis.</summary>
    public const int MatMulReductionAxis = 0;

    /// <summary>The block sizes accepted for per-block quantization.</summary>
    public static IReadOnlyList<int> BlockSizes { get; } = [32, 64, 128];

    private QuantizationSpec(QuantizedType type, bool symmetric, QuantizationGranularity granularity, int axis, int blockSize)
    {
        if (!Enum.IsDefined(type)) throw new InvalidArgumentException("type", $"{(int)type} is not a quantized type; use int8, uint8, int4 or uint4");
        Type = type;
        Symmetric = symmetric;
        Granularity = granularity;
        Axis = axis;
        BlockSize = blockSize;
    }

    public QuantizedType Type { get; }
    public bool Symmetric { get; }
    public QuantizationGranularity Granularity { get; }

    /// <summary>The channel/block axis (may be negative, as in ONNX); 0 and unused for per-tensor.</summary>
    public int Axis { get; }

    /// <summary>Elements per block along <see cref="Axis"/>; 0 unless per-block.</summary>
    public int BlockSize { get; }

    /// <summary>One scale and zero point for the whole tensor.</summary>
    public static QuantizationSpec PerTensor(QuantizedType type, bool symmetric) =>
        new(type, symmetric, QuantizationGranularity.PerTensor, 0, 0);

    /// <summary>One scale and zero point per index along <paramref name="axis"/>.</summary>
    public static QuantizationSpec PerChannel(QuantizedType type, bool symmetric, int axis) =>
        new(type, symmetric, QuantizationGranularity.PerChannel, axis, 0);

    /// <summary>One scale and zero point per <paramref name="blockSize"/> consecutive elements along <paramref name="axis"/>.</summary>
    public static QuantizationSpec PerBlock(QuantizedType type, bool symmetric, int axis, int blockSize)
    {
        if (!BlockSizes.Contains(blockSize))
            throw new InvalidArgumentException("blockSize", $"{blockSize} is not supported; use {string.Join(", ", BlockSizes)}");
        return new(type, symmetric, QuantizationGranularity.PerBlock, axis, blockSize);
    }

    /// <summary>Smallest code of the type: −128, 0, −8 or 0.</summary>
    public int TypeMin => Type switch { QuantizedType.Int8 => -128, QuantizedType.Int4 => -8, _ => 0 };

    /// <summary>Largest code of the type: 127, 255, 7 or 15.</summary>
    public int TypeMax => Type switch { QuantizedType.Int8 => 127, QuantizedType.UInt8 => 255, QuantizedType.Int4 => 7, _ => 15 };

    /// <summary>Whether the type is 4-bit (stored packed two per byte).</summary>
    public bool IsFourBit => Type is QuantizedType.Int4 or QuantizedType.UInt4;

    /// <summary>Whether the type is signed.</summary>
    public bool IsSigned => Type is QuantizedType.Int8 or QuantizedType.Int4;

    /// <summary>Largest |q − zp| in symmetric mode: 127 or 7.</summary>
    public int SymmetricMax => IsFourBit ? 7 : 127;

    /// <summary>The zero point of symmetric mode: 0 for signed types, 128 or 8 for unsigned.</summary>
    public int SymmetricZeroPoint => IsSigned ? 0 : (IsFourBit ? 8 : 128);

    /// <summary>The axis as a non-negative index into a tensor of <paramref name="rank"/> dimensions.</summary>
    public int ResolveAxis(int rank)
    {
        if (Granularity == QuantizationGranularity.PerTensor) return 0;
        if (Axis < -rank || Axis >= rank)
            throw new InvalidArgumentException("axis", $"{Axis} is outside [{-rank}, {rank - 1}] for a rank-{rank} tensor");
        return Axis < 0 ? Axis + rank : Axis;
    }

    /// <summary>The shape of the scale and zero-point tensors for a weight of <paramref name="shape"/>, as ONNX DequantizeLinear wants it.</summary>
    public long[] ScaleShape(ReadOnlySpan<long> shape)
    {
        switch (Granularity)
        {
            case QuantizationGranularity.PerTensor:
                return [];
            case QuantizationGranularity.PerChannel:
                return [shape[ResolveAxis(shape.Length)]];
            default:
                int axis = ResolveAxis(shape.Length);
                var result = shape.ToArray();
                result[axis] = (shape[axis] + BlockSize - 1) / BlockSize;
                return result;
        }
    }

    public override string ToString() => Granularity switch
    {
        QuantizationGranularity.PerTensor => $"{Type} {(Symmetric ? "symmetric" : "asymmetric")} per-tensor",
        QuantizationGranularity.PerChannel => $"{Type} {(Symmetric ? "symmetric" : "asymmetric")} per-channel axis {Axis}",
        _ => $"{Type} {(Symmetric ? "symmetric" : "asymmetric")} per-block axis {Axis} block {BlockSize}",
    };
}
