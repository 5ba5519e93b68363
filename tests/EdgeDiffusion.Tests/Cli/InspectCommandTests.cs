using System.Text.Json;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;

namespace EdgeDiffusion.Tests.Cli;

[Collection("Console")]
public sealed class InspectCommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A "unet" with a 64×48 float weight (external), a DequantizeLinear-compressed int8 weight, and a "text_encoder".</summary>
    private string MakeFolder()
    {
        var unet = OnnxModelTests.AddModel(
            TensorData.Create<float>("big.weight", [64, 48], new float[64 * 48]),
            TensorData.Create<sbyte>("q.weight", [32, 32], new sbyte[32 * 32]),
            TensorData.Create<float>("q.scale", [], [0.5f]));
        unet.Graph.Node.Add(new NodeProto { OpType = "DequantizeLinear", Input = { "q.weight", "q.scale" }, Output = { "q.dequantized" } });
        using (var m = OnnxModel.FromProto(unet)) m.Save(Path.Combine(_dir, "model", "unet", "model.onnx"), OnnxSaveOptions.External(1024));
        using (var m = OnnxModel.FromProto(OnnxModelTests.AddModel())) m.Save(Path.Combine(_dir, "model", "text_encoder", "model.onnx"));
        File.WriteAllText(Path.Combine(_dir, "model", "model_index.json"), "{}");
        return Path.Combine(_dir, "model");
    }

    [Fact]
    public void FolderJsonReportsComponentsAndTotals()
    {
        var result = CliRunner.Run("inspect", MakeFolder(), "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        using var doc = JsonDocument.Parse(result.Out);
        var components = doc.RootElement.GetProperty("components").EnumerateArray().ToList();
        Assert.Equal(new[] { "text_encoder", "unet" }, components.Select(c => c.GetProperty("component").GetString()));
        var unet = components[1].GetProperty("model");
        // Stored: W (4) + big.weight (64*48) + q.weight (32*32) + q.scale (1). Parameters once decompressed: W, big.weight and
        // the 32×32 weight DequantizeLinear rebuilds; its scale is not one.
        long expectedStored = 4 + 64 * 48 + 32 * 32 + 1, expectedParameters = 4 + 64 * 48 + 32 * 32;
        Assert.Equal(expectedStored, unet.GetProperty("stored_value_count").GetInt64());
        Assert.Equal(expectedParameters, unet.GetProperty("parameter_count").GetInt64());
        Assert.Equal(32 * 32, unet.GetProperty("by_dtype").EnumerateArray().Single(d => d.GetProperty("dtype").GetString() == "int8").GetProperty("values").GetInt64());
        Assert.Equal(4 * 4 + 64 * 48 * 4 + 32 * 32 + 4, unet.GetProperty("parameter_bytes").GetInt64());
        Assert.Equal("big.weight", unet.GetProperty("largest_initializers")[0].GetProperty("name").GetString());
        Assert.True(unet.GetProperty("largest_initializers")[0].GetProperty("external").GetBoolean());
        Assert.Equal("model.onnx.data", unet.GetProperty("external_data_files")[0].GetProperty("location").GetString());
        Assert.Equal(1, unet.GetProperty("compression").GetProperty("dequantize_linear").GetInt32());
        Assert.True(unet.GetProperty("compression").GetProperty("compressed").GetBoolean());
        Assert.False(components[0].GetProperty("model").GetProperty("compression").GetProperty("compressed").GetBoolean());
        Assert.Equal(expectedParameters + 4, doc.RootElement.GetProperty("parameter_count").GetInt64());
        Assert.Equal(expectedStored + 4, doc.RootElement.GetProperty("stored_value_count").GetInt64());
        var histogram = unet.GetProperty("op_histogram").EnumerateArray().ToDictionary(p => p.GetProperty("key").GetString()!, p => p.GetProperty("value").GetInt32());
        Assert.Equal(1, histogram["Add"]);
        Assert.Equal(1, histogram["DequantizeLinear"]);
        Assert.Equal("float", unet.GetProperty("inputs")[0].GetProperty("type").GetString());
    }

    [Fact]
    public void TableOutputNamesTheLargestInitializer()
    {
        var result = CliRunner.Run("inspect", Path.Combine(MakeFolder(), "unet", "model.onnx"));
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("big.weight", result.Out);
        Assert.Contains("DequantizeLinear", result.Out);
    }

    [Fact]
    public void BadInputExitsNonZeroWithOneLine()
    {
        var missing = CliRunner.Run("inspect", Path.Combine(_dir, "absent.onnx"));
        Assert.Equal(2, missing.ExitCode);
        Assert.StartsWith("error: ", missing.Error);
        Assert.Contains("absent.onnx", missing.Error);
        Assert.Single(missing.Error.Trim().Split('\n'));

        string empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        var noComponents = CliRunner.Run("inspect", empty);
        Assert.Equal(2, noComponents.ExitCode);
        Assert.Contains("model.onnx", noComponents.Error);
    }

    [Theory]
    [InlineData("linear", "--dtype int4")]
    [InlineData("palettize", "--bits 3")]
    [InlineData("prune", "--sparsity 0.5 --then palettize")]
    public void ACompressedFolderReportsStoredValuesAndTheParametersOnceDecompressed(string method, string options)
    {
        string source = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");
        string compressed = Path.Combine(_dir, method);
        var compress = CliRunner.Run(["compress", source, "-o", compressed, "--method", method, .. options.Split(' ')]);
        Assert.True(compress.ExitCode == 0, compress.Error);

        static JsonElement Inspect(string folder)
        {
            var run = CliRunner.Run("inspect", folder, "--json");
            Assert.True(run.ExitCode == 0, run.Error);
            return JsonDocument.Parse(run.Out).RootElement.Clone();
        }
        var before = Inspect(source);
        var after = Inspect(compressed);
        long parameters = before.GetProperty("parameter_count").GetInt64();
        Assert.Equal(parameters, before.GetProperty("stored_value_count").GetInt64());
        // The decompressed weights have the original shapes: the same parameter count, whatever is stored.
        Assert.Equal(parameters, after.GetProperty("parameter_count").GetInt64());
        Assert.NotEqual(parameters, after.GetProperty("stored_value_count").GetInt64());
        foreach (var (b, a) in before.GetProperty("components").EnumerateArray().Zip(after.GetProperty("components").EnumerateArray()))
            Assert.Equal(b.GetProperty("model").GetProperty("parameter_count").GetInt64(), a.GetProperty("model").GetProperty("parameter_count").GetInt64());

        var table = CliRunner.Run("inspect", Path.Combine(compressed, "unet", "model.onnx"));
        Assert.True(table.ExitCode == 0, table.Error);
        long unet = before.GetProperty("components").EnumerateArray().Single(c => c.GetProperty("component").GetString() == "unet")
            .GetProperty("model").GetProperty("parameter_count").GetInt64();
        Assert.Contains("stored values", table.Out);
        Assert.Contains($"{unet.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} parameters once decompressed", table.Out);
    }
}
