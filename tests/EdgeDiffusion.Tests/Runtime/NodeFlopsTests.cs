using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Runtime;

public sealed class NodeFlopsTests
{
    private static NodeEvent Node(string op, string[] inputs, params string[] outputs) => new("n", op, "CPUExecutionProvider", 10, 0, inputs, outputs);

    [Fact]
    public void ConvolutionCountsTwoPerMultiplyAddOfEveryOutput()
    {
        // 2 · N·Cout·H·W · Cin/group · kh·kw
        Assert.Equal(2.0 * (2 * 8 * 5 * 5) * (4 * 3 * 3), NodeFlops.Of(Node("Conv", ["float[2,4,7,7]", "float[8,4,3,3]", "float[8]"], "float[2,8,5,5]")));
        Assert.Equal(2.0 * (2 * 8 * 5 * 5) * (1 * 3 * 3), NodeFlops.Of(Node("Conv", ["float[2,8,7,7]", "float[8,1,3,3]"], "float[2,8,5,5]")));
        Assert.Equal(2.0 * (1 * 16 * 4 * 4) * 8, NodeFlops.Of(Node("FusedConv", ["float[1,8,4,4]", "float[16,8,1,1]"], "float[1,16,4,4]")));
        Assert.Equal(2.0 * (1 * 16 * 4 * 4) * 8, NodeFlops.Of(Node("QLinearConv", ["uint8[1,8,4,4]", "float[]", "uint8[]", "int8[16,8,1,1]"], "uint8[1,16,4,4]")));
        // ConvTranspose: every input element times Cout/group · kh·kw.
        Assert.Equal(2.0 * (1 * 4 * 3 * 3) * (6 * 2 * 2), NodeFlops.Of(Node("ConvTranspose", ["float[1,4,3,3]", "float[4,6,2,2]"], "float[1,6,6,6]")));
    }

    [Fact]
    public void MatrixProductsCountTheSharedDimension()
    {
        Assert.Equal(2.0 * (2 * 3 * 5) * 4, NodeFlops.Of(Node("MatMul", ["float[2,3,4]", "float[4,5]"], "float[2,3,5]")));
        // Gemm with transA: A is [K, M] = [4, 3].
        Assert.Equal(2.0 * (3 * 5) * 4, NodeFlops.Of(Node("Gemm", ["float[4,3]", "float[4,5]", "float[5]"], "float[3,5]")));
        // MatMulNBits' weight is packed: K comes from A, N from the output.
        Assert.Equal(2.0 * (2 * 7 * 32) * 64, NodeFlops.Of(Node("MatMulNBits", ["float[2,7,64]", "uint8[32,2,16]", "float[64]"], "float[2,7,32]")));
    }

    [Fact]
    public void OtherKernelsAndUnreadableShapesCountZero()
    {
        Assert.Equal(0, NodeFlops.Of(Node("Add", ["float[2,3]", "float[2,3]"], "float[2,3]")));
        Assert.Equal(0, NodeFlops.Of(Node("MatMul", ["float[2,x]", "float[4,5]"], "float[2,5]")));
        Assert.Equal(0, NodeFlops.Of(Node("Conv", [], "float[1,2,3,3]")));
        Assert.Empty(NodeFlops.Dims("float[-1,4]"));
        Assert.Equal(new long[] { 2, 4, 64, 64 }, NodeFlops.Dims("float[2,4,64,64]"));
    }

    [Fact]
    public void ProfiledRunOfARealModelCountsWhatTheFormulaGives()
    {
        // Y = Conv(X, W) with padding 1, Z = grouped Conv(X, W2), C = MatMul(A, B): ONNX Runtime re-lays the convolutions out
        // (NchwcConv, channels in blocks of 8 or 16); with channel counts that fill whole blocks, as a diffusion model's do,
        // the count read from its trace is the formula's. (Odd channel counts count the padded lanes the kernel really computes.)
        var graph = new GraphProto { Name = "flops" };
        graph.Input.Add(Tensor("X", 1, 16, 10, 10));
        graph.Input.Add(Tensor("A", 3, 16));
        graph.Output.Add(Tensor("Y", 1, 32, 10, 10));
        graph.Output.Add(Tensor("Z", 1, 32, 10, 10));
        graph.Output.Add(Tensor("C", 3, 8));
        graph.Initializer.Add(Weights("W", 32, 16, 3, 3));
        graph.Initializer.Add(Weights("W2", 32, 8, 3, 3));
        graph.Initializer.Add(Weights("B", 16, 8));
        graph.Node.Add(Conv("conv", "W", "Y", group: 1));
        graph.Node.Add(Conv("grouped", "W2", "Z", group: 2));
        graph.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "A", "B" }, Output = { "C" } });
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        string dir = TestData.NewTempDir("flops");
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(model));
            using var session = SessionFactory.Create(path, new SessionSettings { ProfilePrefix = Path.Combine(dir, "trace") });
            using var x = OrtValue.CreateTensorValueFromMemory(new float[1600], [1, 16, 10, 10]);
            using var a = OrtValue.CreateTensorValueFromMemory(new float[48], [3, 16]);
            using var options = new RunOptions();
            using (session.Run(options, ["X", "A"], [x, a], ["Y", "Z", "C"])) { }
            var trace = ProfileTrace.Load(session.EndProfiling());
            double expected = 2.0 * 3200 * (16 * 9) + 2.0 * 3200 * (8 * 9) + 2.0 * 24 * 16;
            Assert.Equal(expected, NodeFlops.Total(trace));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static NodeProto Conv(string name, string weight, string output, int group)
    {
        var node = new NodeProto { OpType = "Conv", Name = name, Input = { "X", weight }, Output = { output } };
        node.Attribute.Add(new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 1, 1, 1, 1 } });
        node.Attribute.Add(new AttributeProto { Name = "group", Type = AttributeProto.Types.AttributeType.Int, I = group });
        return node;
    }

    private static TensorProto Weights(string name, params long[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)DT.Float };
        tensor.Dims.AddRange(dims);
        long count = dims.Aggregate(1L, (p, d) => p * d);
        for (long i = 0; i < count; i++) tensor.FloatData.Add((i % 7 - 3) * 0.1f);
        return tensor;
    }

    private static ValueInfoProto Tensor(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DT.Float, Shape = shape } } };
    }
}
