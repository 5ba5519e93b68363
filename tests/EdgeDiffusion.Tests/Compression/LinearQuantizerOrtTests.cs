using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>
/// The quantizer against ONNX Runtime's own QuantizeLinear/DequantizeLinear (opset 21): the initializers
/// <see cref="QuantizedTensor.ToTensorProtos"/> writes must be accepted with their shapes, and give the same values.
/// </summary>
public class LinearQuantizerOrtTests
{
    public static TheoryData<QuantizedType, bool, QuantizationGranularity> Cases()
    {
        var data = new TheoryData<QuantizedType, bool, QuantizationGranularity>();
        foreach (var t in Enum.GetValues<QuantizedType>())
            foreach (bool symmetric in new[] { true, false })
                foreach (var g in Enum.GetValues<QuantizationGranularity>())
                    data.Add(t, symmetric, g);
        return data;
    }

    private static QuantizationSpec Spec(QuantizedType type, bool symmetric, QuantizationGranularity granularity) => granularity switch
    {
        QuantizationGranularity.PerTensor => QuantizationSpec.PerTensor(type, symmetric),
        QuantizationGranularity.PerChannel => QuantizationSpec.PerChannel(type, symmetric, QuantizationSpec.ConvOutputChannelAxis),
        _ => QuantizationSpec.PerBlock(type, symmetric, 1, 32),
    };

    private static float[] Weights(int count)
    {
        var w = OrtRunner.RandomFloats(count, 17);
        for (int i = 0; i < 20; i++) w[i] = 0f; // an all-zero first block
        return w;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OrtDequantizeLinearGivesOurValues(QuantizedType type, bool symmetric, QuantizationGranularity granularity)
    {
        long[] shape = [3, 70, 2]; // per-block along axis 1: blocks of 32, 32 and a partial 6
        var w = Weights(3 * 70 * 2);
        var q = LinearQuantizer.Quantize(w, shape, Spec(type, symmetric, granularity));
        var (data, scale, zp) = q.ToTensorProtos("w");

        var b = new GraphBuilder(21);
        b.Initializer(data);
        b.Initializer(scale);
        b.Initializer(zp);
        b.Input("x", DT.Float, [3, 70, 2]);
        string dq = b.DequantizeLinear("w", "w_scale", "w_zero_point", axis: q.ResolvedAxis, blockSize: q.Spec.BlockSize);
        b.Output(b.Add("x", dq, "y"), DT.Float);
        var y = OrtRunner.Run(b.Build(), GraphOptimizationLevel.ORT_DISABLE_ALL, new Feed("x", shape, new float[w.Length]))["y"];

        Assert.Equal(shape, y.Shape);
        var ours = q.Dequantize();
        for (int i = 0; i < ours.Length; i++) Assert.Equal((double)ours[i], y.Values[i]);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OrtQuantizeLinearThenDequantizeLinearGivesOurRoundTrip(QuantizedType type, bool symmetric, QuantizationGranularity granularity)
    {
        long[] shape = [3, 70, 2];
        var w = Weights(3 * 70 * 2);
        var q = LinearQuantizer.Quantize(w, shape, Spec(type, symmetric, granularity));
        var (_, scale, zp) = q.ToTensorProtos("w");

        var b = new GraphBuilder(21);
        b.Initializer(scale);
        b.Initializer(zp);
        b.Input("x", DT.Float, [3, 70, 2]);
        string quantized = b.QuantizeLinear("x", "w_scale", "w_zero_point", axis: q.ResolvedAxis, blockSize: q.Spec.BlockSize);
        b.Output(b.DequantizeLinear(quantized, "w_scale", "w_zero_point", axis: q.ResolvedAxis, blockSize: q.Spec.BlockSize, output: "y"), DT.Float);
        var y = OrtRunner.Run(b.Build(), GraphOptimizationLevel.ORT_DISABLE_ALL, new Feed("x", shape, w))["y"];

        var ours = q.Dequantize();
        for (int i = 0; i < ours.Length; i++) Assert.Equal((double)ours[i], y.Values[i]);
    }
}
