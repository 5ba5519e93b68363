using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>The tiny Stable Cascade folder written once for the tests that only read it.</summary>
public sealed class TinyCascadeFolderFixture() : WrittenFolderFixture("edgediff-cascade", folder => StableCascadeArchitecture.WriteFolder(StableCascadeConfig.Tiny, folder, Seed))
{
    public const ulong Seed = 5;
}

public class StableCascadeTests(TinyCascadeFolderFixture tiny) : IClassFixture<TinyCascadeFolderFixture>
{
    private static readonly StableCascadeConfig Config = StableCascadeConfig.Tiny;

    private static Feed Floats(string name, long[] shape, int seed) =>
        new(name, shape, RandomFloats((int)shape.Aggregate(1L, (a, b) => a * b), seed));

    [Fact]
    public void Folder_HasEveryFile_AndSmallComponentsAreInline()
    {
        foreach (var file in new[]
        {
            "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
            "text_encoder/model.onnx", "text_encoder/config.json", "prior/model.onnx", "prior/config.json",
            "decoder/model.onnx", "decoder/config.json", "vae_decoder/model.onnx", "vae_decoder/config.json",
        })
            Assert.True(File.Exists(Path.Combine(tiny.Folder, file)), $"{file} is missing");
        Assert.Equal([StableCascadeArchitecture.TextEncoder, StableCascadeArchitecture.Prior, StableCascadeArchitecture.Decoder, StableCascadeArchitecture.VaeDecoder],
            tiny.Written.Select(c => c.Name));
        Assert.All(tiny.Written, c => Assert.False(c.ExternalData));
        var counts = StableCascadeArchitecture.ParameterCounts(Config);
        Assert.All(tiny.Written, c => Assert.Equal(counts[c.Name], c.Parameters));

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "model_index.json")))!;
        Assert.Equal("cascade-tiny", (string?)index["_edgediffusion"]!["architecture"]);
        var prior = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "prior", "config.json")))!;
        Assert.Equal("StableCascadeUNet", (string?)prior["_class_name"]);
        Assert.Equal(32, (int)prior["clip_text_in_channels"]!);
        var decoder = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "decoder", "config.json")))!;
        Assert.Null(decoder["switch_level"]);
        Assert.Equal("SDCascadeAttnBlock", (string?)decoder["block_types_per_layer"]![2]![2]);
        var text = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "text_encoder", "config.json")))!;
        Assert.Equal("CLIPTextModelWithProjection", (string?)text["architectures"]![0]);
    }

    [Fact]
    public void TextEncoder_RunsFromTheFolder_WithProjectedPooledOutput()
    {
        int[] ids = [528, 60, 40, 529, 529, 529, 528, 1, 2, 3, 4, 529];
        var outputs = RunFile(tiny.Model("text_encoder"), new Feed("input_ids", [2, 6], ids));
        Assert.Equal([2L, 32], outputs["text_embeds"].Shape);
        Assert.Equal([2L, 6, 32], outputs["last_hidden_state"].Shape);
        Assert.Equal([2L, 6, 32], outputs["hidden_states.2"].Shape);
        foreach (var (name, value) in outputs) AssertFinite(value, name);
        Assert.NotEqual(outputs["hidden_states.2"].Values, outputs["last_hidden_state"].Values); // before vs after the final LayerNorm
    }

    [Fact]
    public void Prior_RunsFromTheFolder_AnySize()
    {
        var y = RunFile(tiny.Model("prior"),
            Floats("sample", [2, 16, 3, 5], 1),
            new Feed("timestep_ratio", [2], new[] { 0.9f, 0.1f }),
            Floats("clip_text_pooled", [2, 1, 32], 2),
            Floats("clip_text", [2, 7, 32], 3),
            new Feed("clip_img", [2, 1, 16], new float[32]))["out_sample"];
        Assert.Equal([2L, 16, 3, 5], y.Shape);
        AssertFinite(y, "prior out_sample");
        Assert.Contains(y.Values, v => v != 0);
    }

    [Fact]
    public void Decoder_RunsFromTheFolder_WithEffnetOfAnotherSize()
    {
        var y = RunFile(tiny.Model("decoder"),
            Floats("sample", [1, 4, 16, 32], 4),
            new Feed("timestep_ratio", [1], new[] { 0.5f }),
            Floats("clip_text_pooled", [1, 1, 32], 5),
            Floats("effnet", [1, 16, 2, 3], 6))["out_sample"];
        Assert.Equal([1L, 4, 16, 32], y.Shape);
        AssertFinite(y, "decoder out_sample");
    }

    [Fact]
    public void StageA_RunsFromTheFolder_AndUpscalesFourTimes()
    {
        var y = RunFile(tiny.Model("vae_decoder"), Floats("latent_sample", [1, 4, 4, 6], 7))["sample"];
        Assert.Equal([1L, 3, 16, 24], y.Shape);
        AssertFinite(y, "stage A sample");
    }

    [Fact]
    public void Models_DeclareTheCommonInputAndOutputNames()
    {
        using var prior = OnnxModel.Load(tiny.Model("prior"));
        Assert.Equal(["sample", "timestep_ratio", "clip_text_pooled", "clip_text", "clip_img"], prior.Graph.Input.Select(i => i.Name));
        Assert.Equal(["out_sample"], prior.Graph.Output.Select(o => o.Name));
        using var decoder = OnnxModel.Load(tiny.Model("decoder"));
        Assert.Equal(["sample", "timestep_ratio", "clip_text_pooled", "effnet"], decoder.Graph.Input.Select(i => i.Name));
        using var text = OnnxModel.Load(tiny.Model("text_encoder"));
        Assert.Equal(["text_embeds", "last_hidden_state", "hidden_states.2"], text.Graph.Output.Select(o => o.Name));
        using var stageA = OnnxModel.Load(tiny.Model("vae_decoder"));
        Assert.Equal(["latent_sample"], stageA.Graph.Input.Select(i => i.Name));
    }

    [Fact]
    public void TimestepRatio_ChangesThePriorsOutput()
    {
        var model = StableCascadeUNet.Build(Config.Prior, new RandomParameters(9)).ToByteArray();
        Dictionary<string, Fetched> At(float ratio) => RunBytes(model,
            Floats("sample", [1, 16, 2, 2], 1), new Feed("timestep_ratio", [1], new[] { ratio }),
            Floats("clip_text_pooled", [1, 1, 32], 2), Floats("clip_text", [1, 3, 32], 3), Floats("clip_img", [1, 1, 16], 4));
        Assert.NotEqual(At(0.2f)["out_sample"].Values, At(0.8f)["out_sample"].Values);
    }

    [Fact]
    public void FixedBatch_IsDeclared()
    {
        var model = StableCascadeUNet.Build(Config.Decoder, new ShapeOnlyParameters(), new ExportOptions { UNetBatch = 1 });
        Assert.Equal(1, model.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimValue);
        Assert.Equal(1, model.Graph.Output[0].Type.TensorType.Shape.Dim[0].DimValue);
    }

    [Fact]
    public void PixelUnshuffle_OrdersChannelsAsPyTorch_AndPixelShuffleInvertsIt()
    {
        // x[c, h, w] = 100c + 10h + w on [1, 2, 4, 4]; PyTorch: out[c·4 + i·2 + j, h, w] = x[c, 2h + i, 2w + j]
        var g = new GraphBuilder();
        var x = g.Input("x", DT.Float, [1, 2, 4, 4]);
        var unshuffled = StableCascadeUNet.PixelUnshuffle(g, x, 2, 2);
        g.Identity(unshuffled, "unshuffled");
        g.Identity(StableCascadeUNet.PixelShuffle(g, unshuffled, 2), "back");
        g.Output("unshuffled", DT.Float);
        g.Output("back", DT.Float);
        var input = new float[32];
        for (int c = 0; c < 2; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 4; w++)
                    input[c * 16 + h * 4 + w] = 100 * c + 10 * h + w;
        var outputs = RunBytes(g.Build().ToByteArray(), new Feed("x", [1, 2, 4, 4], input));
        var y = outputs["unshuffled"];
        Assert.Equal([1L, 8, 2, 2], y.Shape);
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int h = 0; h < 2; h++)
                        for (int w = 0; w < 2; w++)
                            Assert.Equal(100 * c + 10 * (2 * h + i) + (2 * w + j), y.Values[((c * 4 + i * 2 + j) * 2 + h) * 2 + w]);
        Assert.Equal(input.Select(v => (double)v), outputs["back"].Values);
    }

    [Fact]
    public void TimestepRatioEmbedding_IsSinThenCos_OverDiffusersFrequencies()
    {
        var g = new GraphBuilder();
        var r = g.Input("r", DT.Float, [1]);
        g.Identity(StableCascadeUNet.TimestepRatioEmbedding(g, r, 8), "emb");
        g.Output("emb", DT.Float);
        var emb = RunBytes(g.Build().ToByteArray(), new Feed("r", [1], new[] { 0.25f }))["emb"].Values;
        for (int k = 0; k < 4; k++)
        {
            double arg = 2500 * Math.Exp(-k * Math.Log(10000) / 3);
            Assert.Equal(Math.Sin(arg), emb[k], 2);
            Assert.Equal(Math.Cos(arg), emb[4 + k], 2);
        }
    }

    [Fact]
    public void Config_RejectsMismatchedStages()
    {
        var bad = Config with { Decoder = Config.Decoder with { EffnetChannels = 8 } };
        Assert.Throws<InvalidArgumentException>(() => StableCascadeArchitecture.ParameterCounts(bad));
        Assert.Same(StableCascadeConfig.Lite, StableCascadeConfig.Preset("Cascade-Lite"));
    }
}
