using System.Text.Json;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using Xunit.Abstractions;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>The trained tiny-shapes UNet compressed whole, run by ONNX Runtime against its fp32 self.</summary>
public class ModelCompressorTests(ITestOutputHelper output)
{
    private static string UNetPath => Path.Combine(CompressionOrt.TinyShapes, "unet", "model.onnx");

    private static readonly CompressionSpec Int8PerChannel = new() { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8 };

    private static readonly CompressionSpec Int4Block32 = new()
    {
        Method = CompressionMethod.Linear, Dtype = QuantizedType.Int4, Granularity = QuantizationGranularity.PerBlock, BlockSize = 32,
    };

    public static TheoryData<string, double> UNetCases() => new()
    {
        // Measured 58.4 dB (int8) and 36.6 dB (int4 block 32); thresholds leave room for ORT kernel changes and stay far
        // above what a wrong axis or scale gives (< 15 dB).
        { "int8", 45 },
        { "int4", 28 },
    };

    [Theory]
    [MemberData(nameof(UNetCases))]
    public void TinyShapesUNetRunsCompressedCloseToFp32(string variant, double minimumPsnrDb)
    {
        var spec = variant == "int8" ? Int8PerChannel : Int4Block32;
        using var source = OnnxModel.Load(UNetPath);
        var sourceBytes = source.Proto.ToByteArray();
        var progress = new List<CompressionProgress>();
        using var compressed = ModelCompressor.Compress(source, spec, progress: new SynchronousProgress<CompressionProgress>(progress.Add));

        Assert.Equal(sourceBytes, source.Proto.ToByteArray()); // the input model object is not touched
        var report = compressed.Report;
        Assert.Equal(report.Tensors.Count, progress.Count);
        Assert.Equal(report.Tensors.Count, progress.Max(p => p.Done));
        Assert.True(report.Tensors.Count > 50, $"{report.Tensors.Count} weights compressed");
        Assert.Equal(variant == "int8" ? 8 : 4, report.AverageBits);
        Assert.All(report.Tensors, t => Assert.Equal(4 * t.Parameters, t.BytesBefore));
        Assert.InRange(report.Ratio, variant == "int8" ? 3.8 : 6.0, variant == "int8" ? 4.0 : 8.0);
        Assert.All(report.Tensors, t => Assert.True(t.SnrDb > (variant == "int8" ? 30 : 12), $"{t.Name}: {t.SnrDb:0.0} dB"));
        Assert.Contains(report.Tensors, t => t.Op == "Gemm→MatMul");
        Assert.True(compressed.Model.Graph.Node.Count(n => n.OpType == "Gemm") == 0, "every quantized Gemm was rewritten");
        Assert.Equal(variant == "int8" ? 17 : 21, OpsetUpgrader.DefaultOpset(compressed.Model.Proto));

        var feeds = CompressionOrt.FeedsFor(source.Proto, 11, new Dictionary<string, int> { ["height"] = 8, ["width"] = 8 });
        var expected = OrtRunner.Run(source.Proto, feeds)["out_sample"].Values;
        var actual = OrtRunner.Run(compressed.Model.Proto, feeds)["out_sample"].Values;
        double psnr = CompressionOrt.PsnrDb(expected, actual);
        output.WriteLine($"{spec}: {report.Tensors.Count} weights, ratio {report.Ratio:0.00}, model {report.ModelRatio:0.00}, output PSNR {psnr:0.0} dB");
        Assert.True(psnr >= minimumPsnrDb, $"output PSNR {psnr:0.0} dB");

        // Every compressed MatMul weight reaches ORT's fused kernel: as many MatMulNBits as quantized MatMul weights.
        var optimized = CompressionOrt.OptimizedOpTypes(compressed.Model.Proto);
        int matmulWeights = report.Tensors.Count(t => t.Op is "MatMul" or "Gemm→MatMul");
        Assert.Equal(matmulWeights, optimized.Count(op => op == "MatMulNBits"));
        // And the profiler shows the fused kernel running.
        Assert.Contains("MatMulNBits", CompressionOrt.ProfiledOpTypes(compressed.Model.Proto, feeds));
    }

    [Fact]
    public void TheResultDoesNotDependOnParallelism()
    {
        using var source = OnnxModel.Load(Path.Combine(CompressionOrt.TinyShapes, "text_encoder", "model.onnx"));
        byte[] Compress(int threads)
        {
            using var c = ModelCompressor.Compress(source, Int4Block32, new ModelCompressionOptions { MaxDegreeOfParallelism = threads });
            return c.Model.Proto.ToByteArray();
        }
        Assert.Equal(Compress(1), Compress(4));
    }

    [Fact]
    public void ReportTotalsJsonAndTable()
    {
        using var source = OnnxModel.Load(Path.Combine(CompressionOrt.TinyShapes, "text_encoder", "model.onnx"));
        using var compressed = ModelCompressor.Compress(source, Int8PerChannel);
        var report = compressed.Report;
        Assert.Equal(report.Tensors.Sum(t => t.BytesBefore), report.BytesBefore);
        Assert.Equal(report.ModelBytesBefore - report.BytesBefore + report.BytesAfter, report.ModelBytesAfter);

        using var json = JsonDocument.Parse(report.ToJson());
        var first = json.RootElement.GetProperty("tensors")[0];
        foreach (var key in new[] { "name", "op", "shape", "method", "bits", "bytes_before", "bytes_after", "snr_db" })
            Assert.True(first.TryGetProperty(key, out _), key);
        var totals = json.RootElement.GetProperty("totals");
        Assert.Equal(report.BytesAfter, totals.GetProperty("bytes_after").GetInt64());
        Assert.Equal(8.0, totals.GetProperty("average_bits").GetDouble());

        string table = report.ToTable();
        Assert.All(report.Tensors, t => Assert.Contains(t.Name, table));
        Assert.Contains("bits/param", table);
    }

    [Fact]
    public void DefaultSelectionLeavesEmbeddingsNormsBiasesAndSmallTensorsAlone()
    {
        using var model = OnnxModel.Load(Path.Combine(CompressionOrt.TinyShapes, "text_encoder", "model.onnx"));
        var editor = new GraphEditor(model.Proto.Clone().Graph);
        var chosen = WeightSelection.Default.Select(editor).Select(u => u.Name).ToHashSet();
        var everything = new WeightSelection { MinimumElements = 0 };

        var embeddings = editor.Graph.Node.Where(n => n.OpType == "Gather" && editor.FindInitializer(n.Input[0])?.DataType == (int)DT.Float).Select(n => n.Input[0]).ToList();
        Assert.NotEmpty(embeddings);
        Assert.All(embeddings, e => Assert.Contains("embedding", everything.SkipReason(editor, e)));
        var norms = editor.Graph.Node.Where(n => n.OpType == "LayerNormalization").SelectMany(n => n.Input.Skip(1)).ToList();
        Assert.NotEmpty(norms);
        Assert.All(norms, p => Assert.Contains("normalisation", everything.SkipReason(editor, p)));
        Assert.All(norms.Concat(embeddings), name => Assert.DoesNotContain(name, chosen));

        var small = editor.Graph.Initializer.Where(t => t.DataType == (int)DT.Float && TensorData.ElementCount(t) is > 0 and < 2048).ToList();
        Assert.NotEmpty(small);
        Assert.All(small, t => Assert.DoesNotContain(t.Name, chosen));
        Assert.NotEmpty(chosen);
        Assert.All(chosen, name => Assert.True(TensorData.ElementCount(editor.FindInitializer(name)!) >= 2048));

        // With the guards lifted, the embedding table is chosen too.
        Assert.Contains(embeddings[0], new WeightSelection { IncludeEmbeddings = true }.Select(editor).Select(u => u.Name));
    }

    private static GraphEditor NamedWeights()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [2, 64]);
        string h = "x";
        foreach (var name in new[] { "block.attn.q.weight", "block.attn.k.weight", "block.ff.weight" })
        {
            b.Initializer<float>(name, [64, 64], new float[64 * 64]);
            h = b.MatMul(h, name);
        }
        b.Initializer<float>("conv.weight", [64, 64, 1, 1], new float[64 * 64]);
        b.Output(b.Conv(b.Reshape(h, [2, 64, 1, 1]), "conv.weight", output: "y"), DT.Float);
        return new GraphEditor(b.Build().Graph);
    }

    [Fact]
    public void NamesAndOpTypesFilterTheSelection()
    {
        var editor = NamedWeights();
        string[] Chosen(WeightSelection s) => [.. s.Select(editor).Select(u => u.Name)];

        Assert.Equal(["block.attn.q.weight", "block.attn.k.weight"], Chosen(new WeightSelection { IncludeNames = ["*.attn.*"] }));
        Assert.Equal(["block.ff.weight", "conv.weight"], Chosen(new WeightSelection { ExcludeNames = ["block.attn.?.weight"] }));
        Assert.Equal(["block.attn.k.weight", "block.ff.weight", "conv.weight"], Chosen(new WeightSelection { ExcludeNames = ["*.q.weight"] }));
        Assert.Equal(["conv.weight"], Chosen(new WeightSelection { IncludeOpTypes = ["Conv"] }));
        Assert.Equal(["block.attn.q.weight", "block.attn.k.weight", "block.ff.weight"], Chosen(new WeightSelection { ExcludeOpTypes = ["Conv"] }));
        Assert.Empty(Chosen(new WeightSelection { IncludeNames = ["attn"] })); // whole-name match: no implicit wildcards
    }

    [Fact]
    public void BadOptionsNameTheOption()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => new WeightSelection { IncludeOpTypes = ["Matmul"] }.Validate());
        Assert.Equal("--include-op", e.Argument);
        Assert.Contains("did you mean MatMul", e.Message);
        e = Assert.Throws<InvalidArgumentException>(() => new WeightSelection { ExcludeOpTypes = ["Convolution"] }.Select(NamedWeights()));
        Assert.Equal("--exclude-op", e.Argument);
        Assert.Contains("'Convolution' is not an ONNX operator", e.Message);

        e = Assert.Throws<InvalidArgumentException>(() => WeightEncoders.Create(Int4Block32 with { BlockSize = 48 }));
        Assert.Equal("--block-size", e.Argument);
        e = Assert.Throws<InvalidArgumentException>(() => WeightEncoders.Create(Int8PerChannel with { Dtype = (QuantizedType)9 }));
        Assert.Equal("--dtype", e.Argument);
        e = Assert.Throws<InvalidArgumentException>(() => WeightEncoders.Create(new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 5 }));
        Assert.Equal("--bits", e.Argument);
        e = Assert.Throws<InvalidArgumentException>(() => WeightEncoders.Create(new CompressionSpec { Method = (CompressionMethod)7 }));
        Assert.Equal("--method", e.Argument);
    }

    [Fact]
    public void GemmWithScaledProductStaysGemm()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3, 64]);
        b.Initializer<float>("w", [32, 64], OrtRunner.RandomFloats(32 * 64, 4));
        b.Output(b.Gemm("x", "w", alpha: 0.5f, transB: true, output: "y"), DT.Float);
        var model = b.Build();
        using var source = OnnxModel.FromProto(model);
        using var compressed = ModelCompressor.Compress(source, Int8PerChannel);
        Assert.Single(compressed.Model.Graph.Node, n => n.OpType == "Gemm");
        Assert.Equal("Gemm", Assert.Single(compressed.Report.Tensors).Op);
        var x = new Feed("x", [3, 64], OrtRunner.RandomFloats(3 * 64, 5));
        var fp32 = OrtRunner.Run(model, x)["y"].Values;
        OrtRunner.AssertClose(fp32, OrtRunner.Run(compressed.Model.Proto, x)["y"].Values, atol: 0.05, rtol: 0.01);
    }

    [Fact]
    public void GemmWithoutBiasBecomesOneMatMulAndARecipeMaySkipWeights()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3, 64]);
        b.Initializer<float>("w", [32, 64], OrtRunner.RandomFloats(32 * 64, 4));
        b.Initializer<float>("kept", [32, 64], OrtRunner.RandomFloats(32 * 64, 8));
        b.Output(b.Gemm("x", "w", transB: true, output: "y"), DT.Float);
        b.Output(b.Gemm("x", "kept", transB: true, output: "z"), DT.Float);
        var model = b.Build();
        using var source = OnnxModel.FromProto(model);
        var encoder = WeightEncoders.Create(Int8PerChannel);
        using var compressed = ModelCompressor.Compress(source, use => use.Name == "kept" ? null : encoder);

        var graph = compressed.Model.Graph;
        var matmul = Assert.Single(graph.Node, n => n.OpType == "MatMul");
        Assert.Equal(["x", "w"], matmul.Input);
        Assert.Equal("y", matmul.Output[0]);
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Add");
        Assert.Contains(graph.Initializer, t => t.Name == "kept");
        Assert.Equal("kept", Assert.Single(compressed.Report.Skipped).Name);
        var x = new Feed("x", [3, 64], OrtRunner.RandomFloats(3 * 64, 5));
        var fp32 = OrtRunner.Run(model, x);
        var actual = OrtRunner.Run(compressed.Model.Proto, x);
        Assert.Equal(fp32["z"].Values, actual["z"].Values);
        OrtRunner.AssertClose(fp32["y"].Values, actual["y"].Values, atol: 0.05, rtol: 0.01);
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool, so a test could look before it ran).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        private readonly Lock _gate = new();

        public void Report(T value)
        {
            lock (_gate) report(value);
        }
    }
}
