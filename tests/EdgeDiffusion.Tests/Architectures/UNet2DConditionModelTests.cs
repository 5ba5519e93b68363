using EdgeDiffusion.Architectures;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Architectures;

public class UNet2DConditionModelTests
{
    private static readonly UNetConfig Tiny = StableDiffusionConfig.Tiny.UNet;

    private static byte[] BuildTiny(ExportOptions options) =>
        UNet2DConditionModel.Build(Tiny, new RandomParameters(7), options).ToByteArray();

    private static Feed Timestep(TimestepInput kind, int batch, float value) => kind switch
    {
        TimestepInput.Int64Batch => new Feed("timestep", [batch], Enumerable.Repeat((long)value, batch).ToArray()),
        TimestepInput.Int32Batch => new Feed("timestep", [batch], Enumerable.Repeat((int)value, batch).ToArray()),
        TimestepInput.Float32Batch => new Feed("timestep", [batch], Enumerable.Repeat(value, batch).ToArray()),
        _ => new Feed("timestep", [], new[] { value }),
    };

    [Theory]
    [InlineData(TimestepInput.Int64Batch, DT.Int64, 1)]
    [InlineData(TimestepInput.Float32Batch, DT.Float, 1)]
    [InlineData(TimestepInput.Float32Scalar, DT.Float, 0)]
    [InlineData(TimestepInput.Int32Batch, DT.Int32, 1)]
    public void EveryTimestepVariant_IsDeclaredAsAsked_AndRunsToTheSameOutput(TimestepInput kind, DT type, int rank)
    {
        var model = UNet2DConditionModel.Build(Tiny, new RandomParameters(7), new ExportOptions { Timestep = kind });
        var input = model.Graph.Input.Single(i => i.Name == "timestep").Type.TensorType;
        Assert.Equal((int)type, input.ElemType);
        Assert.Equal(rank, input.Shape.Dim.Count);

        var sample = new Feed("sample", [2, 4, 8, 8], OrtRunner.RandomFloats(2 * 4 * 64, 11));
        var context = new Feed("encoder_hidden_states", [2, 3, 32], OrtRunner.RandomFloats(2 * 3 * 32, 12));
        var y = RunBytes(model.ToByteArray(), sample, Timestep(kind, 2, 500), context)["out_sample"];
        Assert.Equal([2L, 4, 8, 8], y.Shape);
        AssertFinite(y, "out_sample");

        // the same weights with optimum's int64 timestep: the input's type and rank must not change the result
        var reference = RunBytes(BuildTiny(new ExportOptions()), sample, Timestep(TimestepInput.Int64Batch, 2, 500), context)["out_sample"];
        OrtRunner.AssertClose(reference.Values, y.Values, 1e-5, 1e-5);
    }

    [Fact]
    public void FixedBatchOne_DeclaresBatch1_AndRuns()
    {
        var model = UNet2DConditionModel.Build(Tiny, new RandomParameters(7), new ExportOptions { UNetBatch = 1 });
        foreach (var value in model.Graph.Input.Concat(model.Graph.Output))
            if (value.Type.TensorType.Shape.Dim.Count > 0) Assert.Equal(1, value.Type.TensorType.Shape.Dim[0].DimValue);
        var y = RunBytes(model.ToByteArray(),
            new Feed("sample", [1, 4, 8, 8], OrtRunner.RandomFloats(4 * 64, 13)),
            new Feed("timestep", [1], new long[] { 10 }),
            new Feed("encoder_hidden_states", [1, 4, 32], OrtRunner.RandomFloats(4 * 32, 14)))["out_sample"];
        Assert.Equal([1L, 4, 8, 8], y.Shape);
        AssertFinite(y, "out_sample");
    }

    [Fact]
    public void BatchedCall_EqualsTwoSingleCalls()
    {
        // what a pipeline's two-call CFG path relies on: batch rows do not interact
        var model = BuildTiny(new ExportOptions());
        var sample = OrtRunner.RandomFloats(2 * 4 * 64, 15);
        var context = OrtRunner.RandomFloats(2 * 3 * 32, 16);
        var both = RunBytes(model, new Feed("sample", [2, 4, 8, 8], sample), new Feed("timestep", [2], new long[] { 3, 700 }),
            new Feed("encoder_hidden_states", [2, 3, 32], context))["out_sample"].Values;
        for (int b = 0; b < 2; b++)
        {
            var one = RunBytes(model, new Feed("sample", [1, 4, 8, 8], sample[(b * 256)..((b + 1) * 256)]),
                new Feed("timestep", [1], new long[] { b == 0 ? 3 : 700 }),
                new Feed("encoder_hidden_states", [1, 3, 32], context[(b * 96)..((b + 1) * 96)]))["out_sample"].Values;
            OrtRunner.AssertClose(one, both[(b * 256)..((b + 1) * 256)], 1e-5, 1e-4);
        }
    }

    [Fact]
    public void LinearProjections_AsSd2Uses_Run()
    {
        var config = Tiny with { UseLinearProjection = true };
        var model = UNet2DConditionModel.Build(config, new RandomParameters(7));
        Assert.Contains(model.Graph.Initializer, t => t.Name == "down_blocks.0.attentions.0.proj_in.weight" && t.Dims.SequenceEqual([32L, 32L]));
        var y = RunBytes(model.ToByteArray(),
            new Feed("sample", [1, 4, 8, 8], OrtRunner.RandomFloats(256, 17)),
            new Feed("timestep", [1], new long[] { 250 }),
            new Feed("encoder_hidden_states", [1, 3, 32], OrtRunner.RandomFloats(96, 18)))["out_sample"];
        Assert.Equal([1L, 4, 8, 8], y.Shape);
        AssertFinite(y, "out_sample");
    }

    [Fact]
    public void InvalidConfig_IsATypedError()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => UNet2DConditionModel.Build(Tiny with { Heads = [3, 2] }, new ShapeOnlyParameters()));
        Assert.Contains("heads", e.Message);
    }

    [Fact]
    public void TimestepSinusoid_MatchesTheFormula_CosThenSin()
    {
        // diffusers: flip_sin_to_cos=True, freq_shift=0 → [cos(t·f_k), sin(t·f_k)], f_k = 10000^(−k/half)
        const int dim = 320, half = dim / 2;
        float[] t = [0f, 1f, 17f, 999f];
        var g = new GraphBuilder();
        var x = g.Input("t", DT.Float, [t.Length]);
        g.Output(g.Identity(UNet2DConditionModel.TimestepSinusoid(g, x, dim), "emb"), DT.Float, [t.Length, dim]);
        var emb = RunBytes(g.Build().ToByteArray(), new Feed("t", [t.Length], t))["emb"];
        Assert.Equal([(long)t.Length, dim], emb.Shape);

        var expected = new double[t.Length * dim];
        for (int n = 0; n < t.Length; n++)
            for (int k = 0; k < half; k++)
            {
                double f = Math.Pow(10000.0, -(double)k / half);
                expected[n * dim + k] = Math.Cos(t[n] * f);
                expected[n * dim + half + k] = Math.Sin(t[n] * f);
            }
        // float32 arguments up to 999 carry ~1e-4 absolute error
        OrtRunner.AssertClose(expected, emb.Values, 2e-4, 0);
        Assert.Equal(1.0, emb.Values[0]);       // cos(0)
        Assert.Equal(0.0, emb.Values[half]);    // sin(0)
    }
}
