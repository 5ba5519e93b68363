using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Lora;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Checkpoints;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Lora;

/// <summary>
/// LoRA loading (kohya and PEFT layouts) and merging into ONNX weights, against the update written out element by element
/// here: W'[o, i] = W[o, i] + m · (alpha / rank) · Σ_r up[o, r] · down[r, i], stored transposed for MatMul.
/// </summary>
public sealed class LoraMergerTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("lora");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // W for MatMul (stored [in 4, out 3]), Gemm transB (stored [out 3, in 4]) and a 1×1 Conv [out 2, in 3, 1, 1].
    private static readonly float[] MatMulW = [.. Enumerable.Range(0, 12).Select(i => 0.1f * i)];
    private static readonly float[] GemmW = [.. Enumerable.Range(0, 12).Select(i => -0.05f * i)];
    private static readonly float[] ConvW = [.. Enumerable.Range(0, 6).Select(i => 0.2f * i - 0.5f)];
    private static readonly float[] DownQ = [1, 2, 0, -1, 0.5f, 0, 1, 3], UpQ = [1, 0, 2, 1, -1, 0.5f];          // down [2,4], up [3,2]
    private static readonly float[] DownK = [0, 1, 1, 0, 2, -2, 0, 1], UpK = [0.5f, 0.5f, 1, -1, 0, 2];         // down [2,4], up [3,2]
    private static readonly float[] DownC = [1, -1, 2, 0, 3, 1], UpC = [1, 2, -1, 0.25f];                     // down [2,3,1,1], up [2,2,1,1]

    private static OnnxModel Graph()
    {
        var g = new GraphBuilder();
        var x = g.Input("x", DT.Float, [1, 4]);
        var wq = g.Initializer<float>("onnx::MatMul_7", [4, 3], MatMulW);
        var wk = g.Initializer<float>("blk.k.weight", [3, 4], GemmW);
        var q = g.Node("MatMul", [x, wq], 1)[0];
        g.Graph.Node[^1].Name = "/blk/q/MatMul";
        var k = g.Node("Gemm", [x, wk], 1, [Attr.Int("transB", 1)])[0];
        var img = g.Input("img", DT.Float, [1, 3, 2, 2]);
        var wc = g.Initializer<float>("conv.weight", [2, 3, 1, 1], ConvW);
        var c = g.Node("Conv", [img, wc], 1)[0];
        g.Output(q, DT.Float);
        g.Output(k, DT.Float);
        g.Output(c, DT.Float);
        return OnnxModel.FromProto(g.Build());
    }

    private string Kohya(float alphaQ = 1f, bool withConv = true, string extra = "")
    {
        var tensors = new List<SafetensorsBytes.Tensor>
        {
            new("lora_unet_blk_q.lora_down.weight", "F32", [2, 4], SafetensorsBytes.Float32(DownQ)),
            new("lora_unet_blk_q.lora_up.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpQ)),
            new("lora_unet_blk_q.alpha", "F32", [], SafetensorsBytes.Float32(alphaQ)),
            new("lora_unet_blk_k.lora_down.weight", "F32", [2, 4], SafetensorsBytes.Float32(DownK)),
            new("lora_unet_blk_k.lora_up.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpK)),
        };
        if (withConv)
        {
            tensors.Add(new("lora_unet_conv.lora_down.weight", "F32", [2, 3, 1, 1], SafetensorsBytes.Float32(DownC)));
            tensors.Add(new("lora_unet_conv.lora_up.weight", "F32", [2, 2, 1, 1], SafetensorsBytes.Float32(UpC)));
        }
        if (extra.Length > 0)
        {
            tensors.Add(new($"{extra}.lora_down.weight", "F32", [2, 4], SafetensorsBytes.Float32(DownK)));
            tensors.Add(new($"{extra}.lora_up.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpK)));
        }
        return SafetensorsBytes.Write(_dir, $"kohya-{Guid.NewGuid():N}.safetensors", SafetensorsBytes.Build(tensors));
    }

    /// <summary>Σ_r up[o, r] · down[r, i] for up [outs, rank] and down [rank, ins].</summary>
    private static float Product(float[] up, float[] down, int rank, int ins, int o, int i)
    {
        float sum = 0;
        for (int r = 0; r < rank; r++) sum += up[o * rank + r] * down[r * ins + i];
        return sum;
    }

    [Fact]
    public void KohyaUpdatesLandOnEachLayoutWithAlphaOverRankAndTheMultiplier()
    {
        var adapter = LoraAdapter.Parse(Kohya(alphaQ: 1f) + ":0.5");
        Assert.Equal("kohya", adapter.Format);
        Assert.Equal(0.5f, adapter.Multiplier);
        using var model = Graph();
        var report = LoraMerger.Merge(model, "unet", [adapter]);
        Assert.Equal(3, report.Applied);
        Assert.Empty(report.Unmatched);
        var w = model.Graph.Initializer.ToDictionary(t => t.Name, t => model.ReadAsFloat(t));
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < 4; i++)
            {
                // q: alpha 1, rank 2 → 0.5 · 0.5; stored [in, out]. k: no alpha key → alpha = rank → 0.5 · 1; stored [out, in].
                Assert.Equal(MatMulW[i * 3 + o] + 0.25f * Product(UpQ, DownQ, 2, 4, o, i), w["onnx::MatMul_7"][i * 3 + o], 5);
                Assert.Equal(GemmW[o * 4 + i] + 0.5f * Product(UpK, DownK, 2, 4, o, i), w["blk.k.weight"][o * 4 + i], 5);
            }
        for (int o = 0; o < 2; o++)
            for (int i = 0; i < 3; i++)
                Assert.Equal(ConvW[o * 3 + i] + 0.5f * Product(UpC, DownC, 2, 3, o, i), w["conv.weight"][o * 3 + i], 5);
    }

    [Fact]
    public void PeftLayoutIsTheSameUpdate()
    {
        var bytes = SafetensorsBytes.Build(
        [
            new("unet.blk.q.lora_A.weight", "F32", [2, 4], SafetensorsBytes.Float32(DownQ)),
            new("unet.blk.q.lora_B.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpQ)),
        ], new Dictionary<string, string> { ["lora_alpha"] = "4" });
        var adapter = LoraAdapter.Load(SafetensorsBytes.Write(_dir, "peft.safetensors", bytes));
        Assert.Equal("peft", adapter.Format);
        Assert.Equal("blk_q", Assert.Single(adapter.Layers).Target);
        using var model = Graph();
        LoraMerger.Merge(model, "unet", [adapter]);
        var w = model.ReadAsFloat(model.Graph.Initializer.First(t => t.Name == "onnx::MatMul_7"));
        Assert.Equal(MatMulW[1 * 3 + 2] + 2f * Product(UpQ, DownQ, 2, 4, 2, 1), w[1 * 3 + 2], 5); // alpha 4 / rank 2
    }

    [Fact]
    public void ModulePathsComeFromInitializerNamesOrNodeScopes()
    {
        Assert.Equal("down0_attn.attn2.q", LoraMerger.ModulePath("onnx::MatMul_2202", "/down0_attn/attn2/q/MatMul"));
        Assert.Equal("layers.0.mlp.0", LoraMerger.ModulePath("onnx::MatMul_224", "/layers.0/mlp/mlp.0/MatMul"));
        Assert.Equal("time.0", LoraMerger.ModulePath("onnx::Gemm_1", "/time/time.0/Gemm"));
        Assert.Equal("down_blocks.0.resnets.0.conv1", LoraMerger.ModulePath("down_blocks.0.resnets.0.conv1.weight", "whatever"));
    }

    [Fact]
    public void UnmatchedKeysFailUnlessPartialAndAnotherArchitectureIsNamed()
    {
        string file = Kohya(extra: "lora_unet_not_here");
        string unet = Path.Combine(_dir, "unet.onnx");
        using (var model = Graph()) model.Save(unet);
        var components = new Dictionary<string, string> { ["unet"] = unet };
        var e = Assert.Throws<InvalidArgumentException>(() => MergedLoraModels.Prepare(components, new LoraOptions([LoraAdapter.Load(file)])));
        Assert.Contains("1 of 4 tensors match no weight of this model (first: lora_unet_not_here)", e.Message);
        Assert.Contains("--lora-partial", e.Message);
        using (var merged = MergedLoraModels.Prepare(components, new LoraOptions([LoraAdapter.Load(file)], Partial: true)))
        {
            Assert.Equal(3, Assert.Single(merged.Reports).Applied);
            Assert.NotEqual(unet, merged.PathFor("unet", unet));
        }
        // A rank-2 update of 4 → 3 features on a 4 → 3 MatMul fits; on a text encoder key the component is missing.
        string te = SafetensorsBytes.Write(_dir, "te.safetensors", SafetensorsBytes.Build(
        [
            new("lora_te_blk_q.lora_down.weight", "F32", [2, 4], SafetensorsBytes.Float32(DownQ)),
            new("lora_te_blk_q.lora_up.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpQ)),
        ]));
        Assert.Contains("does not have", Assert.Throws<InvalidArgumentException>(() => MergedLoraModels.Prepare(components, new LoraOptions([LoraAdapter.Load(te)]))).Message);
    }

    [Fact]
    public void WrongShapesAndNonLoraFilesAreTypedErrors()
    {
        string wrong = SafetensorsBytes.Write(_dir, "wrong.safetensors", SafetensorsBytes.Build(
        [
            new("lora_unet_blk_q.lora_down.weight", "F32", [2, 5], SafetensorsBytes.Float32([.. new float[10]])),
            new("lora_unet_blk_q.lora_up.weight", "F32", [3, 2], SafetensorsBytes.Float32(UpQ)),
        ]));
        using var model = Graph();
        var e = Assert.Throws<InvalidArgumentException>(() => LoraMerger.Merge(model, "unet", [LoraAdapter.Load(wrong)]));
        Assert.Contains("made for another architecture", e.Message);
        string plain = SafetensorsBytes.Write(_dir, "plain.safetensors", SafetensorsBytes.Build([new("w", "F32", [1], SafetensorsBytes.Float32(1f))]));
        Assert.Contains("not a LoRA file", Assert.Throws<CheckpointFormatException>(() => LoraAdapter.Load(plain)).Message);
        Assert.Equal("--lora", Assert.Throws<InvalidArgumentException>(() => LoraAdapter.Parse(Path.Combine(_dir, "nothing.safetensors"))).Argument);
        Assert.Equal("--lora", Assert.Throws<InvalidArgumentException>(() => LoraAdapter.Parse(Kohya() + ":abc")).Argument);
    }
}
