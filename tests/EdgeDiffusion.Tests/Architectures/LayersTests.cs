using EdgeDiffusion.Architectures;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Architectures;

public class LayersTests
{
    /// <summary>Weights all 1, biases 0: a 3×3 conv then sums its window, so the padding shows in the numbers.</summary>
    private sealed class BoxFilterParameters : ParameterSink
    {
        protected override string Create(GraphBuilder builder, ParameterInfo p)
        {
            var values = new float[p.Count];
            if (!p.Name.EndsWith(".bias", StringComparison.Ordinal)) Array.Fill(values, 1f);
            return builder.Initializer<float>(p.Name, p.Shape, values);
        }
    }

    private static double[] Downsample(float[] x, int side, bool asymmetric)
    {
        var g = new GraphBuilder();
        var input = g.Input("x", DT.Float, [1, 1, side, side]);
        var L = new Layers(g, new BoxFilterParameters());
        g.Output(g.Identity(L.Downsample2D(input, "downsamplers.0", 1, asymmetric), "y"), DT.Float);
        var y = OrtRunner.RunBytes(g.Build().ToByteArray(), new Feed("x", [1, 1, side, side], x))["y"];
        Assert.Equal([1L, 1, side / 2, side / 2], y.Shape);
        return y.Values;
    }

    /// <summary>Sum of x over rows/columns [2i + offset, 2i + offset + 2], zero outside the image.</summary>
    private static double[] WindowSums(float[] x, int side, int offset)
    {
        var sums = new double[side / 2 * side / 2];
        for (int i = 0; i < side / 2; i++)
            for (int j = 0; j < side / 2; j++)
                for (int r = 2 * i + offset; r <= 2 * i + offset + 2; r++)
                    for (int c = 2 * j + offset; c <= 2 * j + offset + 2; c++)
                        if (r >= 0 && r < side && c >= 0 && c < side) sums[i * (side / 2) + j] += x[r * side + c];
        return sums;
    }

    [Fact]
    public void VaeDownsample_PadsOnlyBottomAndRight()
    {
        // diffusers' VAE: F.pad(x, (0, 1, 0, 1)) then a stride-2 3×3 conv without padding: windows start at 2i
        var x = OrtRunner.RandomFloats(36, 21);
        OrtRunner.AssertClose(WindowSums(x, 6, 0), Downsample(x, 6, asymmetric: true), 1e-5, 1e-5);
    }

    [Fact]
    public void UNetDownsample_PadsEverySide()
    {
        // padding 1 all round: windows start at 2i − 1
        var x = OrtRunner.RandomFloats(36, 22);
        OrtRunner.AssertClose(WindowSums(x, 6, -1), Downsample(x, 6, asymmetric: false), 1e-5, 1e-5);
    }
}
