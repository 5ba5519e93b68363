using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

public class OpsetUpgraderTests
{
    public static TheoryData<string> Components() => new() { "unet", "text_encoder", "vae_decoder", "vae_encoder" };

    [Theory]
    [MemberData(nameof(Components))]
    public void TinyShapesComponentsComputeTheSameAtOpset21(string component)
    {
        using var model = OnnxModel.Load(Path.Combine(CompressionOrt.TinyShapes, component, "model.onnx"));
        Assert.Equal(17, OpsetUpgrader.DefaultOpset(model.Proto));
        var upgraded = model.Proto.Clone();
        Assert.True(OpsetUpgrader.Upgrade(upgraded, 21));
        Assert.Equal(21, OpsetUpgrader.DefaultOpset(upgraded));
        Assert.Equal(10, upgraded.IrVersion);

        var feeds = CompressionOrt.FeedsFor(model.Proto, 3, new Dictionary<string, int> { ["height"] = 8, ["width"] = 8 });
        var expected = OrtRunner.Run(model.Proto, feeds);
        var actual = OrtRunner.Run(upgraded, feeds);
        foreach (var (name, value) in expected) Assert.Equal(value.Values, actual[name].Values);
    }

    [Fact]
    public void ReduceAxesBecomeAnInputAndSplitGetsNumOutputs()
    {
        var b = new GraphBuilder(17);
        b.Input("x", DT.Float, [2, 6, 4]);
        string mean = b.ReduceMean("x", [1], keepDims: true);
        string max = b.Node("ReduceMax", ["x"], 1, [Attr.Ints("axes", [-1]), Attr.Int("keepdims", 0)])[0];
        string l2 = b.Node("ReduceL2", ["x"], 1, [Attr.Int("keepdims", 1)])[0]; // no axes: over everything, at both opsets
        var halves = b.Node("Split", ["x"], 2, [Attr.Int("axis", 1)]);
        b.Output(b.Mul(mean, l2, "y"), DT.Float);
        b.Output(b.Identity(max, "m"), DT.Float);
        b.Output(b.Sub(halves[0], halves[1], "d"), DT.Float);
        var model = b.Build();
        var upgraded = model.Clone();
        OpsetUpgrader.Upgrade(upgraded, 21);

        var nodes = upgraded.Graph.Node;
        Assert.All(nodes.Where(n => n.OpType.StartsWith("Reduce", StringComparison.Ordinal)), n => Assert.DoesNotContain(n.Attribute, a => a.Name == "axes"));
        var reduceMax = nodes.Single(n => n.OpType == "ReduceMax");
        Assert.Equal([-1L], TensorData.Read<long>(upgraded.Graph.Initializer.Single(t => t.Name == reduceMax.Input[1])));
        Assert.Equal(2, nodes.Single(n => n.OpType == "Split").Attribute.Single(a => a.Name == "num_outputs").I);

        var x = new Feed("x", [2, 6, 4], OrtRunner.RandomFloats(48, 1));
        var expected = OrtRunner.Run(model, x);
        var actual = OrtRunner.Run(upgraded, x);
        foreach (var (name, value) in expected) Assert.Equal(value.Values, actual[name].Values);
    }

    [Fact]
    public void GroupNormalizationBefore21IsRefusedAndTheModelLeftAsItWas()
    {
        var b = new GraphBuilder(18);
        b.Input("x", DT.Float, [1, 4, 2, 2]);
        b.Initializer<float>("scale", [2], [1f, 1f]);
        b.Initializer<float>("bias", [2], [0f, 0f]);
        b.Output(b.Node("GroupNormalization", ["x", "scale", "bias"], 1, [Attr.Int("num_groups", 2)])[0], DT.Float);
        var model = b.Build();
        var before = model.Clone();

        var e = Assert.Throws<InvalidArgumentException>(() => OpsetUpgrader.Upgrade(model, 21));
        Assert.Contains("GroupNormalization", e.Message);
        Assert.Equal(before, model);
        Assert.Equal(18, OpsetUpgrader.DefaultOpset(model));
    }

    [Fact]
    public void NeverLowersTheOpset()
    {
        var b = new GraphBuilder(21);
        b.Input("x", DT.Float, [1]);
        b.Output(b.Identity("x", "y"), DT.Float);
        var model = b.Build();
        Assert.False(OpsetUpgrader.Upgrade(model, 13));
        Assert.Equal(21, OpsetUpgrader.DefaultOpset(model));
    }
}
