using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Runtime;

/// <summary>
/// ONNX Runtime's exact integer mode (<see cref="PreciseInt8"/>): a W8A8 MatMul whose uint8 activations and int8 weights
/// are at the ends of their ranges, so every pair of products overflows a 16-bit lane (255 · 127 · 2 = 64 770). CPUs
/// without VNNI saturate there by default; with the config entry and explicit zero points the product must be exact on
/// any CPU. Without the zero points ONNX Runtime's int8 → uint8 conversion breaks the per-axis DequantizeLinear.
/// </summary>
public class PreciseInt8Tests
{
    private const int Rows = 4, Inner = 64, Columns = 8;

    private static ModelProto W8A8MatMul(bool zeroPoints)
    {
        var b = new GraphBuilder(17);
        var weights = new sbyte[Inner * Columns];
        for (int i = 0; i < weights.Length; i++) weights[i] = (sbyte)(i % Columns == 0 ? -127 : 127);
        b.Initializer<float>("x_scale", [], [0.02f]);
        b.Initializer<byte>("x_zero_point", [], [0]);
        b.Initializer<sbyte>("w", [Inner, Columns], weights);
        b.Initializer<float>("w_scale", [Columns], Enumerable.Range(1, Columns).Select(c => 0.001f * c).ToArray());
        if (zeroPoints) b.Initializer<sbyte>("w_zero_point", [Columns], new sbyte[Columns]);
        b.Input("x", DT.Float, [Rows, Inner]);
        string xq = b.DequantizeLinear(b.QuantizeLinear("x", "x_scale", "x_zero_point"), "x_scale", "x_zero_point");
        string wq = b.DequantizeLinear("w", "w_scale", zeroPoints ? "w_zero_point" : null, axis: 1);
        b.Output(b.MatMul(xq, wq, "y"), DT.Float);
        return b.Build();
    }

    /// <summary>x is 255 · 0.02 = 5.1 everywhere after quantization; column c sums 64 weights of ±127 · 0.001 · (c + 1).</summary>
    private static double[] Expected()
    {
        var y = new double[Rows * Columns];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Columns; c++) y[r * Columns + c] = 255 * 0.02 * Inner * (c == 0 ? -127 : 127) * 0.001 * (c + 1);
        return y;
    }

    private static double[] Run(ModelProto model)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        options.AddSessionConfigEntry(PreciseInt8.ConfigEntry, "1");
        using var session = new InferenceSession(OnnxModel.FromProto(model).ToBytes(), options);
        var x = new float[Rows * Inner];
        Array.Fill(x, 5.1f);
        return OrtRunner.Run(session, new Feed("x", [Rows, Inner], x))["y"].Values;
    }

    [Fact]
    public void ZeroPointsAddedMakeTheSaturatingProductExact()
    {
        var model = W8A8MatMul(zeroPoints: false);
        Assert.False(PreciseInt8.Supports(model.Graph));
        Assert.Equal(1, PreciseInt8.AddZeroPoints(model.Graph));
        Assert.True(PreciseInt8.Supports(model.Graph));
        var zeroPoint = model.Graph.Initializer.Single(i => i.Name == model.Graph.Node.Single(n => n.OpType == "DequantizeLinear" && n.Input[0] == "w").Input[2]);
        Assert.Equal([Columns], zeroPoint.Dims);
        Assert.Equal((int)DT.Int8, zeroPoint.DataType);
        OrtRunner.AssertClose(Expected(), Run(model), atol: 1e-3, rtol: 1e-5);
    }

    [Fact]
    public void ExplicitZeroPointsAreLeftAsTheyAre()
    {
        var model = W8A8MatMul(zeroPoints: true);
        Assert.True(PreciseInt8.Supports(model.Graph));
        Assert.Equal(0, PreciseInt8.AddZeroPoints(model.Graph));
        OrtRunner.AssertClose(Expected(), Run(model), atol: 1e-3, rtol: 1e-5);
    }

    [Fact]
    public void TheInt8EncoderWritesPerChannelZeroPointsButNotPerTensorOnes()
    {
        var use = new WeightUse("w", [16, 8], [new WeightConsumer("mm", "MatMul", 1)]);
        var values = OrtRunner.RandomFloats(16 * 8, 3);
        var perChannel = new LinearWeightEncoder(new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8, Symmetric = true, Granularity = QuantizationGranularity.PerChannel })
            .Encode(use, values, n => n);
        Assert.Equal(3, perChannel.Nodes[0].Input.Count);
        var perTensor = new LinearWeightEncoder(new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8, Symmetric = true, Granularity = QuantizationGranularity.PerTensor })
            .Encode(use, values, n => n);
        Assert.Equal(2, perTensor.Nodes[0].Input.Count);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void SessionsOfCompressedModelsAskForExactProductsWhereTheGraphAllowsIt(bool zeroPoints, bool expected)
    {
        string dir = Directory.CreateTempSubdirectory("edgediff-precise-").FullName;
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            OnnxModel.FromProto(W8A8MatMul(zeroPoints)).Save(path, OnnxSaveOptions.Inline);
            var settings = SessionFactory.WithDecompression(path, SessionSettings.Default with { Decompression = DecompressionMode.Jit });
            Assert.Equal(expected, settings.ConfigEntries.TryGetValue(PreciseInt8.ConfigEntry, out var v) && v == "1");
            using var session = SessionFactory.Create(path, settings);
            Assert.NotNull(session);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
