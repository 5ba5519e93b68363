using System.Security.Cryptography;
using EdgeDiffusion.Compression;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class CompressCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("compress");
    private static string TinyShapes => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Hash(string folder) => Convert.ToHexString(SHA256.HashData(
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).SelectMany(File.ReadAllBytes).ToArray()));

    [Fact]
    public void CompressesAFolderThatGenerateRunsInBothDecompressionModes()
    {
        string before = Hash(TinyShapes);
        string output = Path.Combine(_dir, "int8");
        var result = CliRunner.Run("compress", TinyShapes, "-o", output, "--method", "linear", "--dtype", "int8", "-q");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("model weights:", result.Out);
        Assert.Equal(before, Hash(TinyShapes));
        foreach (var component in ModelFolderCompressor.ComponentsOf(TinyShapes))
            Assert.True(File.Exists(Path.Combine(output, component, "model.onnx")), component);
        Assert.True(File.Exists(Path.Combine(output, "tokenizer", "vocab.json")));
        Assert.True(new FileInfo(Path.Combine(output, "unet", "model.onnx")).Length < new FileInfo(Path.Combine(TinyShapes, "unet", "model.onnx")).Length / 3);

        foreach (var mode in new[] { "jit", "load" })
        {
            string png = Path.Combine(_dir, mode + ".png");
            var run = CliRunner.Run("generate", "a red circle on a blue background", "--model", output, "-o", png, "-q", "--no-cache", "--steps", "4", "--decompress", mode);
            Assert.True(run.ExitCode == 0, run.Error);
            Assert.True(File.Exists(png));
        }
    }

    [Fact]
    public void PalettizedModelGivesTheSamePictureWhetherExpandedAtLoadOrPerLayer()
    {
        // Both modes compute exactly the table look-ups the graph describes, load once in a side session, jit in every
        // call; only the rest of the graph may be optimized differently (jit runs without constant folding), so the
        // pictures may differ by float rounding, never by a weight.
        string output = Path.Combine(_dir, "p4");
        var result = CliRunner.Run("compress", TinyShapes, "-o", output, "--bits", "4", "--granularity", "per-grouped-channel", "--components", "unet,text_encoder", "-q");
        Assert.True(result.ExitCode == 0, result.Error);
        var pixels = new List<byte[]>();
        foreach (var mode in new[] { "jit", "load" })
        {
            string png = Path.Combine(_dir, $"p4-{mode}.png");
            var run = CliRunner.Run("generate", "a green square on a white background", "--model", output, "-o", png, "-q", "--no-cache", "--steps", "6", "--decompress", mode);
            Assert.True(run.ExitCode == 0, run.Error);
            pixels.Add(EdgeDiffusion.Imaging.RgbaImage.Decode(File.ReadAllBytes(png)).Pixels);
        }
        Assert.Equal(pixels[0].Length, pixels[1].Length);
        int maxDifference = pixels[0].Zip(pixels[1], (a, b) => Math.Abs(a - b)).Max();
        double meanDifference = pixels[0].Zip(pixels[1], (a, b) => (double)Math.Abs(a - b)).Average();
        Assert.True(maxDifference <= 3 && meanDifference < 0.1, $"max {maxDifference}, mean {meanDifference}");
    }

    [Fact]
    public void JsonReportListsEveryCompressedWeight()
    {
        string output = Path.Combine(_dir, "te.onnx");
        var result = CliRunner.Run("compress", Path.Combine(TinyShapes, "text_encoder", "model.onnx"), "-o", output, "--method", "linear",
            "--dtype", "int4", "--block-size", "32", "--json", "-q");
        Assert.True(result.ExitCode == 0, result.Error);
        using var json = System.Text.Json.JsonDocument.Parse(result.Out);
        var tensors = json.RootElement.GetProperty("tensors");
        Assert.True(tensors.GetArrayLength() > 0);
        foreach (var t in tensors.EnumerateArray())
        {
            Assert.Equal(4, t.GetProperty("bits").GetDouble());
            Assert.True(t.GetProperty("bytes_after").GetInt64() < t.GetProperty("bytes_before").GetInt64());
        }
    }

    [Fact]
    public void MixedBitRecipeIsSavedAndReappliesToTheSameModel()
    {
        string source = Path.Combine(TinyShapes, "text_encoder", "model.onnx");
        string planned = Path.Combine(_dir, "planned.onnx"), reapplied = Path.Combine(_dir, "reapplied.onnx"), recipe = Path.Combine(_dir, "recipe.json");
        var plan = CliRunner.Run("compress", source, "-o", planned, "--method", "linear", "--mixed-bit", "--target-bits", "6", "--save-recipe", recipe, "-q");
        Assert.True(plan.ExitCode == 0, plan.Error);
        var loaded = CompressionRecipe.Load(recipe);
        var part = loaded.Components[CompressionRecipe.SingleModelComponent];
        Assert.Contains(part.Tensors.Values, s => s.Dtype == QuantizedType.Int4);
        Assert.Contains(part.Tensors.Values, s => s.Dtype == QuantizedType.Int8);
        Assert.InRange(part.AverageBits, 4, 6);

        var again = CliRunner.Run("compress", source, "-o", reapplied, "--recipe", recipe, "-q");
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Equal(File.ReadAllBytes(planned), File.ReadAllBytes(reapplied));
    }

    [Theory]
    [InlineData("palettize", "--bits", "5", "--bits")]
    [InlineData("palettize", "--granularity", "per-block", "--granularity")]
    [InlineData("squash", "--seed", "1", "--method")]
    [InlineData("linear", "--include-op", "Convv", "--include-op")]
    [InlineData("linear", "--target-bits", "4", "--target-bits")]
    [InlineData("linear", "--dtype", "int3", "--dtype")]
    [InlineData("linear", "--block-size", "48", "--block-size")]
    public void BadOptionsExit2NamingTheOption(string method, string option, string value, string named)
    {
        string output = Path.Combine(_dir, "out.onnx");
        var result = CliRunner.Run("compress", Path.Combine(TinyShapes, "text_encoder", "model.onnx"), "-o", output, "--method", method, option, value, "-q");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.Error);
        Assert.Contains(named, result.Error);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void PruneOptionsAreChecked()
    {
        string output = Path.Combine(_dir, "p.onnx");
        string source = Path.Combine(TinyShapes, "text_encoder", "model.onnx");
        Assert.Contains("--n-m", CliRunner.Run("compress", source, "-o", output, "--method", "prune", "--n-m", "4:2").Error);
        Assert.Contains("--sparsity", CliRunner.Run("compress", source, "-o", output, "--method", "prune", "--sparsity", "1.5").Error);
        Assert.Contains("--then", CliRunner.Run("compress", source, "-o", output, "--method", "linear", "--then", "palettize").Error);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void PrunedModelIsRecognisedAsCompressed()
    {
        // Pruned weights are scattered back by CumSum/Gather/Where, not by a look-up table or DequantizeLinear: the
        // inspector (and so the jit/load session settings) must still see them.
        string source = Path.Combine(TinyShapes, "text_encoder", "model.onnx"), output = Path.Combine(_dir, "pruned.onnx");
        var result = CliRunner.Run("compress", source, "-o", output, "--method", "prune", "--n-m", "2:4", "-q");
        Assert.True(result.ExitCode == 0, result.Error);
        using var model = EdgeDiffusion.Onnx.OnnxModel.Load(output);
        var summary = EdgeDiffusion.Onnx.ModelInspector.DetectCompression(model.Graph, output);
        Assert.True(summary.Compressed);
        Assert.True(summary.ComputedWeights > 0);
        using var original = EdgeDiffusion.Onnx.OnnxModel.Load(source);
        Assert.False(EdgeDiffusion.Onnx.ModelInspector.DetectCompression(original.Graph, source).Compressed);
    }

    [Fact]
    public void MissingInputExistingOutputAndCorruptRecipeAreClearErrors()
    {
        var missing = CliRunner.Run("compress", Path.Combine(_dir, "nope"), "-o", Path.Combine(_dir, "x"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("does not exist", missing.Error);

        string existing = Path.Combine(_dir, "exists.onnx");
        File.WriteAllText(existing, "keep me");
        var clash = CliRunner.Run("compress", Path.Combine(TinyShapes, "text_encoder", "model.onnx"), "-o", existing, "--method", "linear", "-q");
        Assert.Equal(2, clash.ExitCode);
        Assert.Equal("keep me", File.ReadAllText(existing));

        string recipe = Path.Combine(_dir, "bad.json");
        File.WriteAllText(recipe, "{ nope");
        var bad = CliRunner.Run("compress", Path.Combine(TinyShapes, "text_encoder", "model.onnx"), "-o", Path.Combine(_dir, "r.onnx"), "--recipe", recipe);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--recipe", bad.Error);
    }
}
