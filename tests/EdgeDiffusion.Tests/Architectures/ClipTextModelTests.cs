using EdgeDiffusion.Architectures;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Architectures;

public class ClipTextModelTests
{
    private static readonly ClipTextConfig Tiny = StableDiffusionConfig.Tiny.TextEncoder;
    private static readonly byte[] Model = ClipTextModel.Build(Tiny, new RandomParameters(3)).ToByteArray();

    private static Dictionary<string, Fetched> Encode(params int[][] rows) =>
        RunBytes(Model, new Feed("input_ids", [rows.Length, rows[0].Length], rows.SelectMany(r => r).ToArray()));

    private static double[] Row(Fetched f, int b, int position, int width = 32) =>
        f.Values[((b * (int)f.Shape[1] + position) * width)..((b * (int)f.Shape[1] + position + 1) * width)];

    [Fact]
    public void CausalMask_EarlierPositionsIgnoreLaterTokens()
    {
        var a = Encode([528, 100, 200, 300, 529])["last_hidden_state"];
        var b = Encode([528, 100, 7, 8, 529])["last_hidden_state"];
        for (int p = 0; p < 2; p++) OrtRunner.AssertClose(Row(a, 0, p), Row(b, 0, p), 1e-6, 1e-6);
        Assert.NotEqual(Row(a, 0, 2), Row(b, 0, 2)); // from the changed token on, outputs differ
        Assert.NotEqual(Row(a, 0, 4), Row(b, 0, 4));
    }

    [Fact]
    public void PooledOutput_IsTheHiddenStateAtTheFirstEndOfText()
    {
        // 529 (end of text) is the largest id: row 0 has it at 3 then pads with it, row 1 at 5
        var outputs = Encode([528, 60, 40, 529, 529, 529], [528, 1, 2, 3, 4, 529]);
        var hidden = outputs["last_hidden_state"];
        var pooled = outputs["pooler_output"];
        Assert.Equal(Row(hidden, 0, 3), pooled.Values[..32]);
        Assert.Equal(Row(hidden, 1, 5), pooled.Values[32..]);
    }

    [Fact]
    public void Int64InputIds_GiveTheSameOutputs()
    {
        var model = ClipTextModel.Build(Tiny, new RandomParameters(3), new ExportOptions { Int64InputIds = true });
        Assert.Equal((int)DT.Int64, model.Graph.Input[0].Type.TensorType.ElemType);
        long[] ids = [528, 9, 8, 7, 529];
        var wide = RunBytes(model.ToByteArray(), new Feed("input_ids", [1, 5], ids))["last_hidden_state"];
        var narrow = Encode(ids.Select(i => (int)i).ToArray())["last_hidden_state"];
        Assert.Equal(narrow.Values, wide.Values);
    }

    [Fact]
    public void LastHiddenState_IsLayerNormalised()
    {
        // the final LayerNorm starts at scale 1, shift 0: every position has mean 0 and variance 1 over the width
        var hidden = Encode([528, 5, 6, 529])["last_hidden_state"];
        for (int p = 0; p < 4; p++)
        {
            var row = Row(hidden, 0, p);
            double mean = row.Average();
            double variance = row.Select(v => (v - mean) * (v - mean)).Average();
            Assert.InRange(mean, -1e-5, 1e-5);
            Assert.InRange(variance, 0.999, 1.0);
        }
    }

    [Fact]
    public void GeluVariant_AsOpenClipUses_Runs()
    {
        var model = ClipTextModel.Build(Tiny with { Activation = ClipActivation.Gelu }, new RandomParameters(3));
        var outputs = RunBytes(model.ToByteArray(), new Feed("input_ids", [1, 4], new[] { 528, 1, 2, 529 }));
        Assert.Equal([1L, 4, 32], outputs["last_hidden_state"].Shape);
        AssertFinite(outputs["last_hidden_state"], "last_hidden_state");
        Assert.NotEqual(Encode([528, 1, 2, 529])["last_hidden_state"].Values, outputs["last_hidden_state"].Values);
    }
}
