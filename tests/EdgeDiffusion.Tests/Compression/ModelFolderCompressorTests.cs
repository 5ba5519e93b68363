using System.Security.Cryptography;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;

namespace EdgeDiffusion.Tests.Compression;

public sealed class ModelFolderCompressorTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("compress");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly CompressionSpec Int8 = new() { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8 };

    private static IWeightEncoder? Int8For(string component, WeightUse use) => new LinearWeightEncoder(Int8);

    /// <summary>Every file under <paramref name="folder"/> with its SHA-256 and modification time.</summary>
    private static Dictionary<string, string> Fingerprint(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(
            f => Path.GetRelativePath(folder, f),
            f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))) + File.GetLastWriteTimeUtc(f).Ticks);

    private static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public void AWholeFolderCompressesIntoANewFolderAndTheSourceIsUntouched()
    {
        string source = CompressionOrt.TinyShapes;
        var before = Fingerprint(source);
        string output = Path.Combine(_dir, "tiny-int8");

        var report = ModelFolderCompressor.Compress(source, output, Int8For,
            new FolderCompressionOptions { Components = ["unet", "text_encoder", "vae_decoder"] });

        Assert.Equal(before, Fingerprint(source));
        Assert.Equal(["text_encoder", "unet", "vae_decoder"], report.Tensors.Select(t => t.Component).Distinct().Order());
        Assert.Equal([Path.GetFileName(output)], Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName)); // no temporary left
        foreach (var file in before.Keys)
        {
            string copy = Path.Combine(output, file);
            Assert.True(File.Exists(copy), $"{file} is missing from the output");
            bool compressedModel = file.EndsWith("model.onnx", StringComparison.Ordinal) && !file.StartsWith("vae_encoder", StringComparison.Ordinal);
            if (compressedModel) Assert.True(new FileInfo(copy).Length < new FileInfo(Path.Combine(source, file)).Length * 0.6, $"{file} is not smaller");
            else Assert.Equal(Hash(Path.Combine(source, file)), Hash(copy)); // non-weight files and unchosen components are copied
        }

        // The compressed decoder runs and stays close to the original.
        string decoder = Path.Combine("vae_decoder", "model.onnx");
        using var original = OnnxModel.Load(Path.Combine(source, decoder));
        var feeds = CompressionOrt.FeedsFor(original.Proto, 5, new Dictionary<string, int> { ["height"] = 4, ["width"] = 4 });
        var expected = OrtRunner.RunFile(Path.Combine(source, decoder), feeds).Single().Value.Values;
        var actual = OrtRunner.RunFile(Path.Combine(output, decoder), feeds).Single().Value.Values;
        Assert.True(CompressionOrt.PsnrDb(expected, actual) > 30);
    }

    [Fact]
    public void AnExistingOutputIsAnErrorUnlessOverwriteIsAsked()
    {
        string output = Path.Combine(_dir, "out");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "old");
        var options = new FolderCompressionOptions { Components = ["vae_decoder"] };

        var e = Assert.Throws<InvalidArgumentException>(() => ModelFolderCompressor.Compress(CompressionOrt.TinyShapes, output, Int8For, options));
        Assert.Equal("--output", e.Argument);
        Assert.Contains("already exists", e.Message);
        Assert.True(File.Exists(Path.Combine(output, "keep.txt")));

        ModelFolderCompressor.Compress(CompressionOrt.TinyShapes, output, Int8For, options with { Overwrite = true });
        Assert.False(File.Exists(Path.Combine(output, "keep.txt")));
        Assert.True(File.Exists(Path.Combine(output, "model_index.json")));
    }

    [Fact]
    public void BadTargetsAreClearErrors()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => ModelFolderCompressor.Compress(CompressionOrt.TinyShapes, Path.Combine(_dir, "x"), Int8For,
            new FolderCompressionOptions { Components = ["transformer"] }));
        Assert.Equal("--components", e.Argument);
        Assert.Contains("unet", e.Message);

        e = Assert.Throws<InvalidArgumentException>(() => ModelFolderCompressor.Compress(CompressionOrt.TinyShapes, Path.Combine(CompressionOrt.TinyShapes, "int8"), Int8For));
        Assert.Equal("--output", e.Argument);
        Assert.False(Directory.Exists(Path.Combine(CompressionOrt.TinyShapes, "int8")));

        string notAFolder = Path.Combine(_dir, "plain");
        Directory.CreateDirectory(notAFolder);
        e = Assert.Throws<InvalidArgumentException>(() => ModelFolderCompressor.Compress(notAFolder, Path.Combine(_dir, "y"), Int8For));
        Assert.Contains("model_index.json", e.Message);
    }

    [Fact]
    public void OneModelFileCompressesIntoOneFile()
    {
        string source = Path.Combine(CompressionOrt.TinyShapes, "text_encoder", "model.onnx");
        string hash = Hash(source);
        string output = Path.Combine(_dir, "text_encoder.int8.onnx");

        var report = ModelFolderCompressor.Compress(source, output, Int8For);

        Assert.Equal(hash, Hash(source));
        Assert.Equal([Path.GetFileName(output)], Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName));
        using var loaded = OnnxModel.Load(output);
        Assert.Equal(report.Tensors.Count, loaded.Graph.Node.Count(n => n.OpType == "DequantizeLinear"));
        Assert.Throws<InvalidArgumentException>(() => ModelFolderCompressor.Compress(source, output, Int8For));
    }

    [Fact]
    public void LargeModelsAreSavedWithExternalData()
    {
        string output = Path.Combine(_dir, "external");
        ModelFolderCompressor.Compress(CompressionOrt.TinyShapes, output, Int8For,
            new FolderCompressionOptions { Components = ["vae_decoder"], InlineLimitBytes = 1000 });
        string decoder = Path.Combine(output, "vae_decoder", "model.onnx");
        Assert.True(File.Exists(decoder + ".data"));
        using var loaded = OnnxModel.Load(decoder);
        Assert.Contains(loaded.Graph.Initializer, ExternalDataFiles.IsExternal);
        using var original = OnnxModel.Load(Path.Combine(CompressionOrt.TinyShapes, "vae_decoder", "model.onnx"));
        var feeds = CompressionOrt.FeedsFor(original.Proto, 2, new Dictionary<string, int> { ["height"] = 4, ["width"] = 4 });
        OrtRunner.AssertFinite(OrtRunner.RunFile(decoder, feeds).Single().Value, "decoder with external data");
    }
}
