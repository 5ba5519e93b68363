using EdgeDiffusion.Onnx;
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
        var g = new GraphBuilder(17, "flops");
        string input = g.Input("X", DT.Float, [1, 16, 10, 10]);
        g.Output(g.Conv(input, g.Random("W", [32, 16, 3, 3], 0.1f, seed: 1), pads: [1, 1, 1, 1], output: "Y"), DT.Float);
        g.Output(g.Conv(input, g.Random("W2", [32, 8, 3, 3], 0.1f, seed: 2), pads: [1, 1, 1, 1], group: 2, output: "Z"), DT.Float);
        g.Output(g.MatMul(g.Input("A", DT.Float, [3, 16]), g.Random("B", [16, 8], 0.1f, seed: 3), output: "C"), DT.Float);
        var model = g.Build();
        string dir = TestData.NewTempDir("flops");
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            File.WriteAllBytes(path, OnnxModel.FromProto(model).ToBytes());
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
}
