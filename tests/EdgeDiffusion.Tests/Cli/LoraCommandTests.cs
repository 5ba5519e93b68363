using EdgeDiffusion.Lora;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Checkpoints;

namespace EdgeDiffusion.Tests.Cli;

/// <summary>`generate --lora` and `compress --lora` on the shipped default model with a small synthetic kohya LoRA.</summary>
[Collection("Console")]
public sealed class LoraCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("lora-cli");
    private static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A rank-2 kohya LoRA on two UNet cross-attention projections found in the model's own graph.</summary>
    private string SyntheticLora(string extraKey = "")
    {
        using var unet = OnnxModel.Load(Path.Combine(Model, "unet", "model.onnx"));
        var targets = LoraMerger.TargetsOf(unet.Graph).Keys.Where(k => k.Contains("attn2_q", StringComparison.Ordinal) || k.Contains("attn2_k", StringComparison.Ordinal)).Take(2).ToList();
        Assert.Equal(2, targets.Count);
        var tensors = new List<SafetensorsBytes.Tensor>();
        var rng = new Random(3);
        foreach (var key in targets.Select(t => "lora_unet_" + t).Append(extraKey).Where(k => k.Length > 0))
        {
            tensors.Add(new($"{key}.lora_down.weight", "F32", [2, 64], SafetensorsBytes.Float32([.. Enumerable.Range(0, 128).Select(_ => (float)rng.NextDouble() - 0.5f)])));
            tensors.Add(new($"{key}.lora_up.weight", "F32", [64, 2], SafetensorsBytes.Float32([.. Enumerable.Range(0, 128).Select(_ => (float)rng.NextDouble() - 0.5f)])));
        }
        return SafetensorsBytes.Write(_dir, $"l{Guid.NewGuid():N}.safetensors", SafetensorsBytes.Build(tensors));
    }

    [Fact]
    public void GenerateMergesTheLoraReportsItAndChangesThePicture()
    {
        string lora = SyntheticLora(), plain = Path.Combine(_dir, "plain.png"), adapted = Path.Combine(_dir, "lora.png");
        Assert.Equal(0, CliRunner.Run("generate", "a red circle on a blue background", "-o", plain, "-q", "--no-cache").ExitCode);
        var r = CliRunner.Run("generate", "a red circle on a blue background", "-o", adapted, "-q", "--no-cache", "--lora", lora + ":2");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("2/2 tensors applied (unet 2)", r.Error);
        Assert.NotEqual(File.ReadAllBytes(plain), File.ReadAllBytes(adapted));
        Assert.True(File.Exists(Path.Combine(Model, "unet", "model.onnx"))); // the source folder is untouched (its hash is the cache key's concern)
    }

    [Fact]
    public void UnmatchedKeysNeedPartialAndCompressedModelsPointToCompressLora()
    {
        string lora = SyntheticLora("lora_unet_no_such_module");
        var r = CliRunner.Run("generate", "a red circle", "-o", Path.Combine(_dir, "x.png"), "-q", "--no-cache", "--lora", lora);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("error: --lora:", r.Error);
        Assert.Contains("1 of 3 tensors match no weight", r.Error);
        var partial = CliRunner.Run("generate", "a red circle", "-o", Path.Combine(_dir, "x.png"), "-q", "--no-cache", "--lora", lora, "--lora-partial");
        Assert.True(partial.ExitCode == 0, partial.Error);
        Assert.Contains("2/3 tensors applied", partial.Error);

        string q8 = Path.Combine(_dir, "q8");
        Assert.Equal(0, CliRunner.Run("compress", Model, "-o", q8, "--method", "linear", "--dtype", "int8", "-q", "--components", "unet").ExitCode);
        var onCompressed = CliRunner.Run("generate", "a red circle", "--model", q8, "-o", Path.Combine(_dir, "y.png"), "-q", "--no-cache", "--lora", SyntheticLora());
        Assert.Equal(2, onCompressed.ExitCode);
        Assert.Contains("compress SOURCE -o OUT --lora", onCompressed.Error);
        var compressed = CliRunner.Run("compress", Model, "-o", Path.Combine(_dir, "q8lora"), "--method", "linear", "--dtype", "int8", "-q", "--components", "unet", "--lora", SyntheticLora());
        Assert.True(compressed.ExitCode == 0, compressed.Error);
        Assert.Equal(0, CliRunner.Run("generate", "a red circle", "--model", Path.Combine(_dir, "q8lora"), "-o", Path.Combine(_dir, "z.png"), "-q", "--no-cache").ExitCode);
    }
}
