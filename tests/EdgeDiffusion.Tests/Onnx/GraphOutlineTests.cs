using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Tests.Onnx;

public sealed class GraphOutlineTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("outline");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("unet")]
    [InlineData("text_encoder")]
    public void OutlineHasTheGraphAndInitializerHeadersButNoWeightBytes(string component)
    {
        string path = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", component, "model.onnx");
        using var model = OnnxModel.Load(path);
        var outline = OnnxModel.ReadGraphOutline(path);

        Assert.Equal(model.Graph.Node, outline.Node);
        Assert.Equal(model.Graph.Input, outline.Input);
        Assert.Equal(model.Graph.Output, outline.Output);
        Assert.Equal(model.Graph.Initializer.Select(t => (t.Name, t.DataType, string.Join(",", t.Dims))),
            outline.Initializer.Select(t => (t.Name, t.DataType, string.Join(",", t.Dims))));
        Assert.All(outline.Initializer, t => Assert.True(t.RawData.IsEmpty && t.FloatData.Count == 0 && t.Int64Data.Count == 0, t.Name));
        Assert.Equal(ModelInspector.DetectCompression(model.Graph, path), ModelInspector.DetectCompression(outline, path));
    }

    [Fact]
    public void CompressionIsDetectedFromTheOutlineAsFromTheWholeModel()
    {
        string source = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "text_encoder", "model.onnx");
        string output = Path.Combine(_dir, "p4.onnx");
        ModelFolderCompressor.Compress(source, output, (_, _) => WeightEncoders.Create(new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 4 }));
        using var model = OnnxModel.Load(output);
        var full = ModelInspector.DetectCompression(model.Graph, output);
        Assert.True(full.Compressed);
        Assert.Equal(full, ModelInspector.DetectCompression(OnnxModel.ReadGraphOutline(output), output));
    }

    [Fact]
    public void CorruptFileIsATypedErrorNamingIt()
    {
        string path = Path.Combine(_dir, "bad.onnx");
        File.WriteAllBytes(path, [0x3a, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModel.ReadGraphOutline(path));
        Assert.Contains("bad.onnx", e.Message);
    }
}
