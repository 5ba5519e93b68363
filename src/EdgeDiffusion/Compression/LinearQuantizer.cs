using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>
/// A weight tensor quantized by <see cref="LinearQuantizer"/>: one integer code per element (in the weight's own
/// row-major order), and the scales and zero points in the shape ONNX DequantizeLinear (opset 21) wants for the
/// spec's granularity (<see cref="QuantizationSpec.ScaleShape"/>), also row-major.
/// </summary>
public sealed class QuantizedTensor
{
    internal QuantizedTensor(QuantizationSpec spec, long[] shape, int axis, int[] values, long[] scaleShape, float[] scales, int[] zeroPoints)
    {
        Spec = spec;
        Shape = shape;
        ResolvedAxis = axis;
        Values = values;
        ScaleShape = scaleShape;
        Scales = scales;
        ZeroPoints = zeroPoints;
    }

    public QuantizationSpec Spec { get; }
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The spec's axis made non-negative for this tensor's rank (0 for per-tensor).</summary>
    public int ResolvedAxis { get; }

    /// <summary>The integer codes, each within the type's range.</summary>
    public int[] Values { get; }

    public IReadOnlyList<long> ScaleShape { get; }
    public float[] Scales { get; }
    public int[] ZeroPoints { get; }

    /// <summary>The codes as int8 (the spec's type must be int8).</summary>
    public sbyte[] ValuesAsInt8()
    {
        if (Spec.Type != QuantizedType.Int8) throw new InvalidOperationException($"values are {Spec.Type}, not Int8");
        return Array.ConvertAll(Values, v => (sbyte)v);
    }

    /// <summary>The codes as uint8 (the spec's type must be uint8).</summary>
    public byte[] ValuesAsUInt8()
    {
        if (Spec.Type != QuantizedType.UInt8) throw new InvalidOperationException($"values are {Spec.Type}, not UInt8");
        return Array.ConvertAll(Values, v => (byte)v);
    }

    /// <summary>The float values DequantizeLinear gives: y = (q − zp)·scale.</summary>
    public float[] Dequantize() => LinearQuantizer.Dequantize(this);

    /// <summary>
    /// The three DequantizeLinear inputs as initializers: the codes (int8/uint8, or int4/uint4 packed two per byte),
    /// the float scales and the zero points (same type as the codes), named <paramref name="name"/>,
    /// <paramref name="name"/>_scale and <paramref name="name"/>_zero_point.
    /// </summary>
    public (TensorProto Data, TensorProto Scale, TensorProto ZeroPoint) ToTensorProtos(string name)
    {
        long[] shape = [.. Shape];
        long[] scaleShape = [.. ScaleShape];
        return (Codes(name, shape, Values), TensorData.Create<float>(name + "_scale", scaleShape, Scales), Codes(name + "_zero_point", scaleShape, ZeroPoints));
    }

    private TensorProto Codes(string name, long[] dims, int[] codes) => Spec.Type switch
    {
        QuantizedType.Int8 => TensorData.Create<sbyte>(name, dims, Array.ConvertAll(codes, v => (sbyte)v)),
        QuantizedType.UInt8 => TensorData.Create<byte>(name, dims, Array.ConvertAll(codes, v => (byte)v)),
        _ => TensorData.CreateInt4(name, dims, codes, Spec.IsSigned),
    };
}

/// <summary>
/// Linear (affine) quantization of float weights as ONNX QuantizeLinear/DequantizeLinear define it:
/// q = saturate(round_half_even(w / scale) + zp), ŵ = (q − zp)·scale, in float32.
/// How scales and zero points are chosen is described on <see cref="QuantizationSpec"/>.
/// </summary>
public static class LinearQuantizer
{
    /// <summary>The smallest positive normal float32, the floor for a scale that would underflow.</summary>
    public const float SmallestNormal = 1.17549435e-38f;

    /// <summary>Quantizes <paramref name="weights"/> (row-major, <paramref name="shape"/>) as <paramref name="spec"/> says.</summary>
    public static QuantizedTensor Quantize(ReadOnlySpan<float> weights, ReadOnlySpan<long> shape, QuantizationSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var layout = Layout.Of(shape, spec, weights.Length);
        int groups = layout.GroupCount;

        var min = new float[groups];
        var max = new float[groups];
        for (int i = 0; i < weights.Length; i++)
        {
            float w = weights[i];
            if (!float.IsFinite(w)) throw new InvalidArgumentException("weights", $"element {i} is {w}; only finite values can be quantized");
            int g = layout.GroupOf(i);
            if (w < min[g]) min[g] = w; // both start at 0, so the range always includes 0
            if (w > max[g]) max[g] = w;
        }

        var scales = new float[groups];
        var zeroPoints = new int[groups];
        for (int g = 0; g < groups; g++)
            (scales[g], zeroPoints[g]) = ScaleAndZeroPoint(min[g], max[g], spec);

        var values = new int[weights.Length];
        int qmin = spec.TypeMin, qmax = spec.TypeMax;
        for (int i = 0; i < weights.Length; i++)
        {
            int g = layout.GroupOf(i);
            values[i] = QuantizeValue(weights[i], scales[g], zeroPoints[g], qmin, qmax);
        }
        if (spec.Symmetric)
        {
            // Symmetric range: |q − zp| ≤ 127 (or 7). max|w|/scale rounds to at most that, so this only guards rounding.
            int lo = spec.SymmetricZeroPoint - spec.SymmetricMax, hi = spec.SymmetricZeroPoint + spec.SymmetricMax;
            for (int i = 0; i < values.Length; i++) values[i] = Math.Clamp(values[i], lo, hi);
        }
        return new QuantizedTensor(spec, shape.ToArray(), layout.Axis, values, spec.ScaleShape(shape), scales, zeroPoints);
    }

    /// <summary>ONNX QuantizeLinear on one value: saturate(round_half_even(x / scale) + zp) to [qmin, qmax].</summary>
    public static int QuantizeValue(float x, float scale, int zeroPoint, int qmin, int qmax)
    {
        float r = MathF.Round(x / scale, MidpointRounding.ToEven);
        double q = (double)r + zeroPoint;
        return (int)Math.Clamp(q, qmin, qmax);
    }

    /// <summary>ONNX DequantizeLinear on one value: (q − zp)·scale.</summary>
    public static float DequantizeValue(int q, float scale, int zeroPoint) => (q - zeroPoint) * scale;

    /// <summary>The float values DequantizeLinear gives for <paramref name="tensor"/>.</summary>
    public static float[] Dequantize(QuantizedTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var layout = Layout.Of([.. tensor.Shape], tensor.Spec, tensor.Values.Length);
        var result = new float[tensor.Values.Length];
        for (int i = 0; i < result.Length; i++)
        {
            int g = layout.GroupOf(i);
            result[i] = DequantizeValue(tensor.Values[i], tensor.Scales[g], tensor.ZeroPoints[g]);
        }
        return result;
    }

    /// <summary>
    /// Signal-to-noise ratio of a reconstruction in dB: 10·log10(Σw² / Σ(w − ŵ)²);
    /// +∞ when the reconstruction is exact (including all-zero weights).
    /// </summary>
    public static double SnrDb(ReadOnlySpan<float> original, ReadOnlySpan<float> reconstructed) => WeightSnr.Db(original, reconstructed);

    /// <summary>Quantizes, dequantizes and measures the SNR of <paramref name="weights"/> in one call.</summary>
    public static double SnrDb(ReadOnlySpan<float> weights, ReadOnlySpan<long> shape, QuantizationSpec spec) =>
        SnrDb(weights, Quantize(weights, shape, spec).Dequantize());

    private static (float Scale, int ZeroPoint) ScaleAndZeroPoint(float min, float max, QuantizationSpec spec)
    {
        if (spec.Symmetric)
        {
            float absMax = MathF.Max(-min, max);
            return (Floor(absMax / spec.SymmetricMax, absMax == 0), spec.SymmetricZeroPoint);
        }
        int qmin = spec.TypeMin, qmax = spec.TypeMax;
        double range = (double)max - min;
        float scale = Floor((float)(range / (qmax - qmin)), range == 0);
        // In float32, as ONNX DynamicQuantizeLinear computes its intermediate zero point.
        float zp = MathF.Round(qmin - min / scale, MidpointRounding.ToEven);
        return (scale, (int)Math.Clamp(zp, qmin, qmax));
    }

    private static float Floor(float scale, bool allZero)
    {
        if (allZero) return 1f;
        return float.IsNormal(scale) ? scale : SmallestNormal;
    }

    /// <summary>Maps each element's flat index to its scale/zero-point group (flat index into the scale tensor).</summary>
    private readonly struct Layout
    {
        private readonly QuantizationGranularity _granularity;
        private readonly long _inner, _axisLength, _blocks;
        private readonly int _blockSize;

        private Layout(QuantizationGranularity granularity, int axis, long inner, long axisLength, int blockSize, long blocks, int groups)
        {
            _granularity = granularity;
            Axis = axis;
            _inner = inner;
            _axisLength = axisLength;
            _blockSize = blockSize;
            _blocks = blocks;
            GroupCount = groups;
        }

        public int Axis { get; }
        public int GroupCount { get; }

        public static Layout Of(ReadOnlySpan<long> shape, QuantizationSpec spec, int valueCount)
        {
            long count = 1;
            foreach (long d in shape)
            {
                if (d < 0) throw new InvalidArgumentException("shape", $"has a negative dimension ({d})");
                count = checked(count * d);
            }
            if (count != valueCount)
                throw new InvalidArgumentException("weights", $"{valueCount} values for shape [{string.Join(",", shape.ToArray())}] of {count} elements");
            if (spec.Granularity == QuantizationGranularity.PerTensor)
                return new Layout(spec.Granularity, 0, 1, 1, 0, 1, 1);
            if (shape.Length == 0)
                throw new InvalidArgumentException("shape", $"a scalar cannot be quantized {spec}; use per-tensor");
            int axis = spec.ResolveAxis(shape.Length);
            long inner = 1;
            for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
            long axisLength = shape[axis];
            if (spec.Granularity == QuantizationGranularity.PerChannel)
                return new Layout(spec.Granularity, axis, inner, axisLength, 0, axisLength, checked((int)axisLength));
            long blocks = (axisLength + spec.BlockSize - 1) / spec.BlockSize;
            long groups = axisLength == 0 ? 0 : count / axisLength * blocks;
            return new Layout(spec.Granularity, axis, inner, axisLength, spec.BlockSize, blocks, checked((int)groups));
        }

        public int GroupOf(int index)
        {
            switch (_granularity)
            {
                case QuantizationGranularity.PerTensor:
                    return 0;
                case QuantizationGranularity.PerChannel:
                    return (int)(index / _inner % _axisLength);
                default:
                    long innerIndex = index % _inner;
                    long rest = index / _inner;
                    long a = rest % _axisLength, outer = rest / _axisLength;
                    return (int)((outer * _blocks + a / _blockSize) * _inner + innerIndex);
            }
        }
    }
}
