using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>
/// Every linear variant on a small Conv, MatMul and Gemm graph, compressed by <see cref="ModelCompressor"/> and run by
/// ONNX Runtime: equal to the float graph holding the C# reconstruction, within the quantization bound of the fp32
/// graph, and (MatMul, Gemm rewritten as MatMul) run as ORT's fused MatMulNBits.
/// </summary>
public class LinearWeightEncoderOrtTests
{
    public enum Layer { Conv, MatMul, Gemm }

    private const int Batch = 5, K = 96, N = 48, ConvIn = 32, ConvOut = 16, Side = 6;

    public static TheoryData<Layer, QuantizedType, bool, QuantizationGranularity> Cases()
    {
        var data = new TheoryData<Layer, QuantizedType, bool, QuantizationGranularity>();
        foreach (var layer in Enum.GetValues<Layer>())
            foreach (var t in Enum.GetValues<QuantizedType>())
                foreach (bool symmetric in new[] { true, false })
                    foreach (var g in Enum.GetValues<QuantizationGranularity>())
                        data.Add(layer, t, symmetric, g);
        return data;
    }

    private static long[] WeightShape(Layer layer) => layer switch
    {
        Layer.Conv => [ConvOut, ConvIn, 3, 3],
        Layer.MatMul => [K, N],
        _ => [N, K], // Gemm transB = 1: [out, in], as exporters write linear layers
    };

    private static float[] Weights(Layer layer)
    {
        long count = WeightShape(layer).Aggregate(1L, (a, d) => a * d);
        var w = OrtRunner.RandomFloats((int)count, 5, 0.2f);
        for (int i = 0; i < 40; i++) w[i] = 0f; // an all-zero block / part of a channel
        w[100] = 0.9f; // an outlier that stretches its channel's range
        return w;
    }

    private static ModelProto Graph(Layer layer, float[] weights)
    {
        var b = new GraphBuilder();
        b.Initializer<float>("w", WeightShape(layer), weights);
        switch (layer)
        {
            case Layer.Conv:
                b.Input("x", DT.Float, [1, ConvIn, Side, Side]);
                b.Initializer<float>("bias", [ConvOut], OrtRunner.RandomFloats(ConvOut, 6));
                b.Output(b.Conv("x", "w", "bias", pads: [1, 1, 1, 1], output: "y"), DT.Float);
                break;
            case Layer.MatMul:
                b.Input("x", DT.Float, [Batch, K]);
                b.Output(b.MatMul("x", "w", "y"), DT.Float);
                break;
            default:
                b.Input("x", DT.Float, [Batch, K]);
                b.Initializer<float>("bias", [N], OrtRunner.RandomFloats(N, 6));
                b.Output(b.Gemm("x", "w", "bias", transB: true, output: "y"), DT.Float);
                break;
        }
        return b.Build();
    }

    private static Feed Input(Layer layer) => layer == Layer.Conv
        ? new Feed("x", [1, ConvIn, Side, Side], OrtRunner.RandomFloats(ConvIn * Side * Side, 9))
        : new Feed("x", [Batch, K], OrtRunner.RandomFloats(Batch * K, 9));

    private static CompressionSpec Spec(QuantizedType type, bool symmetric, QuantizationGranularity granularity, int blockSize = 32) => new()
    {
        Method = CompressionMethod.Linear,
        Dtype = type,
        Symmetric = symmetric,
        Granularity = granularity,
        BlockSize = granularity == QuantizationGranularity.PerBlock ? blockSize : 0,
    };

    /// <summary>The C# reconstruction in the original layout, computed independently of the compressor's own run.</summary>
    private static (float[] Reconstructed, QuantizationSpec Quantization) Reference(Layer layer, float[] weights, CompressionSpec spec)
    {
        var encoder = new LinearWeightEncoder(spec);
        if (layer != Layer.Gemm)
        {
            var use = new WeightUse("w", WeightShape(layer), [new WeightConsumer("node", layer.ToString(), 1)]);
            return (encoder.Encode(use, weights, n => n).Reconstructed, encoder.QuantizationFor(use));
        }
        // The compressor stores a rewritten Gemm's weight transposed, as a MatMul B [K, N].
        var matmulUse = new WeightUse("w", [K, N], [new WeightConsumer("node", "MatMul", 1)]);
        var transposed = Transpose(weights, N, K);
        return (Transpose(encoder.Encode(matmulUse, transposed, n => n).Reconstructed, K, N), encoder.QuantizationFor(matmulUse));
    }

    private static float[] Transpose(float[] m, int rows, int columns)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++) t[c * rows + r] = m[r * columns + c];
        return t;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OrtRunsTheCompressedGraphAsTheReconstructedWeights(Layer layer, QuantizedType type, bool symmetric, QuantizationGranularity granularity)
    {
        var weights = Weights(layer);
        var spec = Spec(type, symmetric, granularity);
        using var source = OnnxModel.FromProto(Graph(layer, weights));
        using var compressed = ModelCompressor.Compress(source, spec);
        var graph = compressed.Model.Graph;

        // The weight is now computed by one DequantizeLinear along the axis the layer implies.
        var dq = Assert.Single(graph.Node, n => n.OpType == "DequantizeLinear");
        Assert.Equal("w", dq.Output[0]);
        Assert.DoesNotContain(graph.Initializer, t => t.Name == "w");
        var (reconstructed, quantization) = Reference(layer, weights, spec);
        long? axis = dq.Attribute.FirstOrDefault(a => a.Name == "axis")?.I;
        long expectedAxis = (layer, granularity) switch
        {
            (_, QuantizationGranularity.PerTensor) => -1,
            (Layer.Conv, QuantizationGranularity.PerChannel) => 0, // output channels of W [O, I, kh, kw]
            (Layer.Conv, _) => 1, // blocks along the input channels
            (_, QuantizationGranularity.PerChannel) => 1, // columns N of B [K, N]
            _ => 0, // blocks along K
        };
        Assert.Equal(expectedAxis, axis ?? -1);
        Assert.Equal(expectedAxis, granularity == QuantizationGranularity.PerTensor ? -1 : quantization.Axis);
        bool needs21 = type is QuantizedType.Int4 or QuantizedType.UInt4 || granularity == QuantizationGranularity.PerBlock;
        Assert.Equal(needs21 ? 21 : GraphBuilder.DefaultOpset, OpsetUpgrader.DefaultOpset(compressed.Model.Proto));
        if (layer == Layer.Gemm)
        {
            Assert.DoesNotContain(graph.Node, n => n.OpType == "Gemm");
            Assert.Contains(graph.Node, n => n.OpType == "MatMul");
        }

        // The reconstruction is within half a step of every weight (no value is clipped).
        var scales = TensorData.Read<float>(graph.Initializer.Single(t => t.Name == dq.Input[1]));
        double halfStep = scales.Max() / 2;
        double maxWeightError = weights.Zip(reconstructed, (w, r) => Math.Abs(w - r)).Max();
        Assert.True(maxWeightError <= halfStep * (1 + 1e-5), $"weight error {maxWeightError} over half a step {halfStep}");

        var x = Input(layer);
        var actual = OrtRunner.Run(compressed.Model.Proto, x)["y"].Values;
        var expected = OrtRunner.Run(Graph(layer, reconstructed), x)["y"].Values;
        OrtRunner.AssertClose(expected, actual, atol: 2e-5, rtol: 2e-5);

        // Against fp32: each output sums at most `reduction` products, each off by at most |x|·maxWeightError.
        var fp32 = OrtRunner.Run(Graph(layer, weights), x)["y"].Values;
        int reduction = layer == Layer.Conv ? ConvIn * 9 : K;
        double bound = reduction * ((float[])x.Values).Max(Math.Abs) * maxWeightError + 1e-4;
        for (int i = 0; i < fp32.Length; i++)
            Assert.True(Math.Abs(fp32[i] - actual[i]) <= bound, $"output {i}: {actual[i]} vs fp32 {fp32[i]}, bound {bound}");

        var optimized = CompressionOrt.OptimizedOpTypes(compressed.Model.Proto);
        if (layer == Layer.Conv) Assert.DoesNotContain("MatMulNBits", optimized);
        else
        {
            Assert.Contains("MatMulNBits", optimized);
            Assert.DoesNotContain("DequantizeLinear", optimized);
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    public void LargerBlocksAlsoFuseIntoMatMulNBits(int blockSize)
    {
        var weights = Weights(Layer.MatMul);
        using var source = OnnxModel.FromProto(Graph(Layer.MatMul, weights));
        var spec = Spec(QuantizedType.Int4, true, QuantizationGranularity.PerBlock, blockSize); // K = 96: a partial last block
        using var compressed = ModelCompressor.Compress(source, spec);
        var x = Input(Layer.MatMul);
        var expected = OrtRunner.Run(Graph(Layer.MatMul, Reference(Layer.MatMul, weights, spec).Reconstructed), x)["y"].Values;
        OrtRunner.AssertClose(expected, OrtRunner.Run(compressed.Model.Proto, x)["y"].Values, atol: 2e-5, rtol: 2e-5);
        Assert.Contains("MatMulNBits", CompressionOrt.OptimizedOpTypes(compressed.Model.Proto));
    }
}
