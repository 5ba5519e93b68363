using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

public class WeightSelectionTests
{
    [Fact]
    public void OneDimensionalScalesOfDecomposedNormsStayFloatUnlessAskedFor()
    {
        // A decomposed GroupNorm ends in Mul(scale) and Add(shift) with 1-D tensors; a MatMul weight beside them is chosen.
        var g = new GraphBuilder();
        string x = g.Input("x", DT.Float, [2, 4096]);
        string scaled = g.Add(g.Mul(x, g.Random("norm.weight", [4096], 1f)), g.Random("norm.bias", [4096], 1f));
        g.Output(g.MatMul(scaled, g.Random("proj.weight", [4096, 8], 0.1f)), DT.Float);
        var graph = g.Build().Graph;

        Assert.Equal(["proj.weight"], WeightSelection.Default.Select(graph).Select(w => w.Name));
        Assert.Contains("1-D", new WeightSelection().SkipReason(new GraphEditor(graph), "norm.weight"));
        Assert.Equal(["norm.weight", "norm.bias", "proj.weight"], new WeightSelection { IncludeNormalization = true }.Select(graph).Select(w => w.Name));
    }
}
