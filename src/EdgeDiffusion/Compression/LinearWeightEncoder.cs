using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Linear quantization of a weight (<see cref="LinearQuantizer"/>) rebuilt in the graph by one DequantizeLinear.
/// Per-channel scales follow the output channels (<see cref="WeightUse.OutputChannelAxis"/>); blocks run along the
/// reduction axis (<see cref="BlockAxis"/>), the layout ONNX Runtime fuses into MatMulNBits for a 2-D MatMul B.
/// The zero point is left out when it is 0 everywhere (symmetric signed types), as DequantizeLinear then assumes 0,
/// except for 8-bit per-axis weights: ONNX Runtime's exact-integer mode (<see cref="Runtime.PreciseInt8"/>) turns int8
/// weights into uint8 and fails on a per-axis DequantizeLinear without one.
/// </summary>
public sealed class LinearWeightEncoder : IWeightEncoder
{
    public LinearWeightEncoder(CompressionSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Method != CompressionMethod.Linear)
            throw new InvalidArgumentException("--method", $"{spec.Method} is not linear quantization");
        Spec = spec.Validate();
    }

    public CompressionSpec Spec { get; }

    public string Description => Spec.ToString();

    /// <summary>Bits per stored code: 8 or 4.</summary>
    public int Bits => Spec.Dtype is QuantizedType.Int4 or QuantizedType.UInt4 ? 4 : 8;

    /// <summary>
    /// The axis blocks run along: the reduction axis of the reader (Conv W [O, I, …]: 1; MatMul B [.., K, N]: rank − 2;
    /// Gemm B: 1 with transB, else 0); the last axis when the readers differ or are unknown.
    /// </summary>
    public static int BlockAxis(WeightUse use)
    {
        int rank = use.Shape.Count;
        if (rank <= 1) return 0;
        return use.OpType switch
        {
            "Conv" or "ConvTranspose" => 1,
            "MatMul" => rank - 2,
            "Gemm" => use.Consumers.Any(c => c.TransB) ? 1 : 0,
            _ => rank - 1,
        };
    }

    /// <summary>How this encoder quantizes <paramref name="use"/>: the spec with the axis the weight's readers imply.</summary>
    public QuantizationSpec QuantizationFor(WeightUse use) => Spec.Granularity switch
    {
        QuantizationGranularity.PerTensor => QuantizationSpec.PerTensor(Spec.Dtype, Spec.Symmetric),
        QuantizationGranularity.PerChannel => QuantizationSpec.PerChannel(Spec.Dtype, Spec.Symmetric, use.OutputChannelAxis),
        _ => QuantizationSpec.PerBlock(Spec.Dtype, Spec.Symmetric, BlockAxis(use), Spec.BlockSize),
    };

    public string? CannotEncode(WeightUse use)
    {
        if (use.Shape.Count == 0 && Spec.Granularity != QuantizationGranularity.PerTensor)
            return $"a scalar cannot be quantized {Spec.Granularity}; use per-tensor";
        if (use.ElementCount == 0) return "has no elements";
        return null;
    }

    public EncodedWeight Encode(WeightUse use, ReadOnlySpan<float> weights, Func<string, string> uniqueName)
    {
        ArgumentNullException.ThrowIfNull(use);
        ArgumentNullException.ThrowIfNull(uniqueName);
        if (CannotEncode(use) is { } why) throw new InvalidArgumentException(use.Name, why);
        var spec = QuantizationFor(use);
        var quantized = LinearQuantizer.Quantize(weights, [.. use.Shape], spec);
        var (data, scale, zeroPoint) = quantized.ToTensorProtos(use.Name);
        data.Name = uniqueName(use.Name + ".quantized");
        scale.Name = uniqueName(use.Name + ".scale");
        bool zeroPointNeeded = quantized.ZeroPoints.Any(z => z != 0) || (Bits == 8 && spec.Granularity != QuantizationGranularity.PerTensor);
        if (zeroPointNeeded) zeroPoint.Name = uniqueName(use.Name + ".zero_point");

        var node = new NodeProto { OpType = "DequantizeLinear", Name = uniqueName(use.Name + ".DequantizeLinear") };
        node.Input.Add(data.Name);
        node.Input.Add(scale.Name);
        if (zeroPointNeeded) node.Input.Add(zeroPoint.Name);
        node.Output.Add(use.Name);
        if (spec.Granularity != QuantizationGranularity.PerTensor) node.Attribute.Add(Attr.Int("axis", quantized.ResolvedAxis));
        if (spec.Granularity == QuantizationGranularity.PerBlock) node.Attribute.Add(Attr.Int("block_size", spec.BlockSize));

        string granularity = spec.Granularity switch
        {
            QuantizationGranularity.PerTensor => "per-tensor",
            QuantizationGranularity.PerChannel => $"per-channel axis {quantized.ResolvedAxis}",
            _ => $"block {spec.BlockSize} axis {quantized.ResolvedAxis}",
        };
        return new EncodedWeight
        {
            OutputName = use.Name,
            Initializers = zeroPointNeeded ? [data, scale, zeroPoint] : [data, scale],
            Nodes = [node],
            Reconstructed = quantized.Dequantize(),
            Method = "linear",
            Bits = Bits,
            Detail = $"{Spec.Dtype.ToString().ToLowerInvariant()} {(Spec.Symmetric ? "sym" : "asym")} {granularity}",
            // Per-axis DequantizeLinear exists since opset 13; int4 types and block_size arrived in 21.
            MinimumOpset = spec.IsFourBit || spec.Granularity == QuantizationGranularity.PerBlock ? 21 : 13,
        };
    }
}
