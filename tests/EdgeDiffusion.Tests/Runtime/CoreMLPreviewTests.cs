using EdgeDiffusion.Onnx;
using EdgeDiffusion.Runtime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Runtime;

public sealed class CoreMLPreviewTests
{
    /// <summary>
    /// x → Relu → Sigmoid → Floor (not in the list) → Tanh → Conv with a bias from a graph input (constraint: bias must
    /// be constant) → Add(conv, tanh); plus y → Exp, a branch not connected to the rest.
    /// </summary>
    private static CoreMLPrediction Predict(bool requireStatic = false)
    {
        var b = new GraphBuilder();
        string x = b.Input("x", DT.Float, [1, 4, 8, 8]);
        string y = b.Input("y", DT.Float, ["batch", 4]);
        string bias = b.Input("bias", DT.Float, [4]);
        string relu = b.Unary("Relu", x);
        string sigmoid = b.Sigmoid(relu);
        string floor = b.Unary("Floor", sigmoid);
        string tanh = b.Tanh(floor);
        string w = b.Random("w", [4, 4, 3, 3], 0.1f, seed: 1);
        string conv = b.Node("Conv", [tanh, w, bias], attributes: [Attr.Ints("pads", [1, 1, 1, 1])])[0];
        string sum = b.Add(conv, tanh);
        string exp = b.Exp(y);
        b.Output(sum, DT.Float);
        b.Output(exp, DT.Float);
        return CoreMLPreview.Predict(b.Build().Graph, "test", requireStatic);
    }

    [Fact]
    public void UnsupportedOpsAndConstraintsSplitThePartitions()
    {
        var p = Predict();
        Assert.Equal(["Relu", "Sigmoid", "Floor", "Tanh", "Conv", "Add", "Exp"], p.Nodes.Select(n => n.OpType));
        Assert.Equal([true, true, false, true, false, true, true], p.Nodes.Select(n => n.Supported));
        Assert.Equal("op Floor is not in CoreML's ML Program support list", p.Nodes[2].Reason);
        Assert.Equal("Conv bias must be constant", p.Nodes[4].Reason);
        // Tanh and Add cannot share a partition: Add needs Tanh's output back through the CPU Conv. Exp is not connected to Relu/Sigmoid.
        var names = p.Nodes.Select(n => n.Name).ToList();
        Assert.Equal([[names[0], names[1]], [names[3]], [names[5]], [names[6]]], p.Partitions.Select(q => q.ToList()).ToList());
        Assert.Equal([0, 0, -1, 1, -1, 2, 3], p.Nodes.Select(n => n.Partition));
        Assert.Equal(5, p.SupportedNodes);
    }

    [Fact]
    public void RequireStaticShapesRejectsDynamicInputs()
    {
        var p = Predict(requireStatic: true);
        var exp = p.Nodes.Single(n => n.OpType == "Exp");
        Assert.False(exp.Supported);
        Assert.Equal("dynamic input shape with RequireStaticInputShapes=1", exp.Reason);
        Assert.Contains("'y'", exp.Detail);
        Assert.True(p.Nodes.Single(n => n.OpType == "Relu").Supported); // x is static
    }

    [Fact]
    public void IntegerDataInputsAndNonConstantGemmWeightsFallBack()
    {
        var b = new GraphBuilder();
        string x = b.Input("x", DT.Float, [2, 3]);
        string w = b.Input("w", DT.Float, [3, 3]);
        string ids = b.Input("ids", DT.Int64, [2]);
        string gemm = b.Node("Gemm", [x, w])[0];
        string shape = b.Node("Shape", [gemm])[0];
        string doubled = b.Add(ids, shape);
        b.Output(gemm, DT.Float);
        b.Output(doubled, DT.Int64);
        var p = CoreMLPreview.Predict(b.Build().Graph, "test");
        Assert.Equal("Gemm input B must be constant", p.Nodes[0].Reason);
        Assert.True(p.Nodes[1].Supported); // Shape reads a float tensor's shape
        Assert.Equal("int64 data input; CoreML's op builders take float32/float16", p.Nodes[2].Reason);
        Assert.Single(p.Partitions);
    }

    [Fact]
    public void TinyShapesUNetPredictionCoversEveryNode()
    {
        string unet = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "unet", "model.onnx");
        var p = CoreMLPreview.Predict(unet);
        using var model = OnnxModel.Load(unet);
        Assert.Equal(model.Graph.Node.Count(n => n.OpType != "Constant"), p.Nodes.Count); // Constant nodes become initializers in ONNX Runtime
        Assert.True(p.SupportedNodes > 0);
        Assert.Equal(p.SupportedNodes, p.Partitions.Sum(q => q.Count));
        Assert.All(p.Nodes.Where(n => !n.Supported), n => Assert.False(string.IsNullOrEmpty(n.Reason)));
    }
}
