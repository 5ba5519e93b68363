using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Cli;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>
/// W8A8 on the trained tiny-shapes UNet: the QDQ graph ONNX Runtime turns into its integer kernels (QLinearConv,
/// MatMulIntegerToFloat), the quantization parameters as the formulas define them, outputs close to float32, and the
/// ranges carried in the model's metadata. Pictures are judged in Gate/CompressionPictureTests.
/// </summary>
public sealed class W8A8Tests
{
    private static string UNet => Path.Combine(CompressionOrt.TinyShapes, "unet", "model.onnx");

    [Theory]
    [InlineData(-1f, 3f, 4f / 255f, 64)]     // zero point round(1 / (4/255)) = round(63.75)
    [InlineData(0.5f, 2f, 2f / 255f, 0)]     // widened to hold 0
    [InlineData(-6f, -2f, 6f / 255f, 255)]
    public void UInt8ParametersCoverTheRangeWidenedToZero(float min, float max, float scale, int zeroPoint)
    {
        var (s, z) = new ActivationRange(min, max).UInt8Parameters();
        Assert.Equal(scale, s, 1e-7f);
        Assert.Equal(zeroPoint, z);
    }

    private static (W8A8Model Model, ActivationRanges Ranges) Quantize(OnnxModel source, CalibrationInputs inputs, long minimumElements = 2048)
    {
        var options = new W8A8Options { MaxDegreeOfParallelism = 1, MinimumElements = minimumElements };
        var weights = W8A8Quantizer.Candidates(source.Graph, options);
        var ranges = ActivationRanges.Calibrate(source, W8A8Quantizer.CalibrationTensors(source.Graph, weights), inputs.Samples, "test inputs", threads: 1);
        return (W8A8Quantizer.Quantize(source, ranges, options), ranges);
    }

    [Fact]
    public void OnnxRuntimeRunsTheQuantizedLayersOnIntegerKernels()
    {
        using var source = OnnxModel.Load(UNet);
        using var inputs = CalibrationInputs.For(source.Graph, samples: 2, spatialSize: 8, batch: 2);
        var (w8a8, _) = Quantize(source, inputs);
        using var _ = w8a8;
        int convs = w8a8.Layers.Quantized.Count(n => n.Contains("Conv", StringComparison.Ordinal));
        int matmuls = w8a8.Layers.Quantized.Count - convs;
        Assert.True(convs > 10 && matmuls > 20, $"{convs} Conv and {matmuls} MatMul layers quantized");
        var ops = CompressionOrt.OptimizedOpTypes(w8a8.Compressed.Model.Proto, EdgeDiffusion.Runtime.SessionSettings.DecompressionEntries(EdgeDiffusion.Runtime.DecompressionMode.Jit));
        Assert.Equal(convs, ops.Count(o => o == "QLinearConv"));
        Assert.Equal(matmuls, ops.Count(o => o == "MatMulIntegerToFloat"));
        // What stays float is what the default list keeps: conv_in, conv_out, the 1×1 skips, and the time-embedding Gemms.
        Assert.All(w8a8.Layers.LeftFloat, l => Assert.DoesNotContain("attn", l.Node, StringComparison.Ordinal));
    }

    [Fact]
    public void OurBuildersUNetRunsOnIntegerKernelsToo()
    {
        string dir = TestData.NewTempDir("w8a8-builder");
        try
        {
            EdgeDiffusion.Architectures.StableDiffusionArchitecture.WriteFolder(EdgeDiffusion.Architectures.StableDiffusionConfig.Tiny, dir, 0);
            using var source = OnnxModel.Load(Path.Combine(dir, "unet", "model.onnx"));
            using var inputs = CalibrationInputs.For(source.Graph, samples: 1, spatialSize: 8, batch: 2);
            // The tiny preset's layers are small: every one is quantized here, as SD1.5's (all over 2048 weights) are by default.
            var (w8a8, _) = Quantize(source, inputs, minimumElements: 0);
            using var _ = w8a8;
            int convs = w8a8.Layers.Quantized.Count(n => n.EndsWith("/Conv", StringComparison.Ordinal));
            var ops = CompressionOrt.OptimizedOpTypes(w8a8.Compressed.Model.Proto, EdgeDiffusion.Runtime.SessionSettings.DecompressionEntries(EdgeDiffusion.Runtime.DecompressionMode.Jit));
            var histogram = string.Join(", ", ops.GroupBy(o => o).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}"))
                + " | before: " + string.Join(", ", w8a8.Compressed.Model.Graph.Node.GroupBy(n => n.OpType).Select(g => $"{g.Key} {g.Count()}"))
                + " | left float: " + string.Join("; ", w8a8.Layers.LeftFloat.Take(4).Select(l => l.Node + " " + l.Reason));
            Assert.True(ops.Count(o => o == "QLinearConv") >= convs && convs > 0, $"{convs} quantized convs; optimized graph: {histogram}; quantized: {string.Join(" ", w8a8.Layers.Quantized.Take(5))}");
            Assert.True(ops.Count(o => o == "MatMulIntegerToFloat") == w8a8.Layers.Quantized.Count - convs, histogram);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ConvBiasIsInt32AtTheInputTimesWeightScale()
    {
        using var source = OnnxModel.Load(UNet);
        using var inputs = CalibrationInputs.For(source.Graph, samples: 1, spatialSize: 8, batch: 2);
        var (w8a8, ranges) = Quantize(source, inputs);
        using var _ = w8a8;
        var graph = w8a8.Compressed.Model.Graph;
        var editor = new GraphEditor(graph);
        var conv = graph.Node.First(n => n.OpType == "Conv" && n.Name == "/down0_res/conv2/Conv");
        var inputDq = editor.Producer(conv.Input[0])!;
        var weightDq = editor.Producer(conv.Input[1])!;
        var biasDq = editor.Producer(conv.Input[2])!;
        float inputScale = TensorData.ReadAsFloat(editor.FindInitializer(inputDq.Input[1])!)[0];
        var weightScales = TensorData.ReadAsFloat(editor.FindInitializer(weightDq.Input[1])!);
        var biasScales = TensorData.ReadAsFloat(editor.FindInitializer(biasDq.Input[1])!);
        var biasCodes = TensorData.Read<int>(editor.FindInitializer(biasDq.Input[0])!);
        var floatBias = source.ReadAsFloat(source.Graph.Initializer.First(t => t.Name == "down0_res.conv2.bias"));

        // The input scale is the calibrated range of the conv's float input over 255.
        string floatInput = source.Graph.Node.First(n => n.Name == "/down0_res/conv2/Conv").Input[0];
        Assert.True(ranges.TryGet(floatInput, out var range));
        Assert.Equal((MathF.Max(range.Max, 0) - MathF.Min(range.Min, 0)) / 255f, inputScale, 1e-6f);
        for (int c = 0; c < floatBias.Length; c++)
        {
            Assert.Equal(inputScale * weightScales[c], biasScales[c], 1e-6f * biasScales[c] + 1e-12f);
            Assert.True(Math.Abs(biasCodes[c] * (double)biasScales[c] - floatBias[c]) <= biasScales[c] / 2 + 1e-9, $"channel {c}");
        }
    }

    [Fact]
    public void OutputsStayCloseToFloat32AndRangesTravelInTheMetadata()
    {
        using var source = OnnxModel.Load(UNet);
        using var inputs = CalibrationInputs.For(source.Graph, samples: 2, spatialSize: 8, batch: 2);
        var (w8a8, ranges) = Quantize(source, inputs);
        using var _ = w8a8;
        var read = ActivationRanges.ReadFrom(w8a8.Compressed.Model.Proto, "unet");
        Assert.NotNull(read);
        Assert.Equal(ranges.ByTensor.OrderBy(p => p.Key, StringComparer.Ordinal), read!.ByTensor.OrderBy(p => p.Key, StringComparer.Ordinal));
        Assert.Equal("test inputs", read.Calibration);
        Assert.Contains(w8a8.Compressed.Model.Proto.MetadataProps, p => p.Key == W8A8Quantizer.RecipeKey && p.Value.Contains("left_float", StringComparison.Ordinal));

        // The UNet's ε on a calibration sample: SNR of the int8 graph's output against float32's.
        var feeds = inputs.Samples[1].Select(s => new Feed(s.Name, [.. s.Value.GetTensorTypeAndShape().Shape],
            s.Value.GetTensorTypeAndShape().ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float
                ? s.Value.GetTensorDataAsSpan<float>().ToArray() : s.Value.GetTensorDataAsSpan<long>().ToArray())).ToArray();
        var reference = OrtRunner.Run(source.Proto, feeds).Values.First().Values;
        var quantized = OrtRunner.Run(w8a8.Compressed.Model.Proto, feeds).Values.First().Values;
        double signal = reference.Sum(v => v * v), noise = reference.Zip(quantized, (a, b) => (a - b) * (a - b)).Sum();
        double snr = 10 * Math.Log10(signal / noise);
        Assert.True(snr > 20, $"output SNR {snr:F1} dB");
    }
}

[Collection("Console")]
public sealed class W8A8CommandTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("w8a8-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ASingleFileIsRefusedBeforeCalibration()
    {
        var result = CliRunner.Run("compress", Path.Combine(CompressionOrt.TinyShapes, "unet", "model.onnx"), "-o", Path.Combine(_dir, "x.onnx"), "--method", "w8a8");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is not a model folder", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
    }

    [Fact]
    public void AStableCascadeFolderIsRefusedWithTheFormsThatWork()
    {
        string output = Path.Combine(_dir, "cascade-w8a8");
        var result = CliRunner.Run("compress", Path.Combine(TestData.RepoRoot, "models", "tiny-cascade"), "-o", output, "--method", "w8a8");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error: --method:", result.Error);
        Assert.Contains("Stable Cascade folder", result.Error);
        Assert.Contains("--method palettize or linear", result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void AnExistingOutputIsRefusedBeforeCalibration()
    {
        string output = Directory.CreateDirectory(Path.Combine(_dir, "exists")).FullName;
        var result = CliRunner.Run("compress", CompressionOrt.TinyShapes, "-o", output, "--method", "w8a8");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("already exists", result.Error);
        Assert.DoesNotContain("calibration", result.Error);
    }

    [Fact]
    public void WritesAFolderGenerateRuns()
    {
        string output = Path.Combine(_dir, "w8a8");
        string prompts = Path.Combine(_dir, "prompts.txt");
        File.WriteAllLines(prompts, ["a red circle on a blue background", "", "a green square on a white background"]);
        var result = CliRunner.Run("compress", CompressionOrt.TinyShapes, "-o", output, "--method", "w8a8", "--calibration-prompts", prompts, "--calibration-steps", "4");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("calibration 2/2", result.Error);
        Assert.Contains("2 prompts × 4 steps", ReadCalibration(output));
        string png = Path.Combine(_dir, "w8a8.png");
        var run = CliRunner.Run("generate", "a red circle on a blue background", "--model", output, "-o", png, "-q", "--no-cache", "--steps", "4");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.True(File.Exists(png));
    }

    [Fact]
    public void CompressingAFolderCalibratesItsUNetUnlessToldNot()
    {
        string calibrated = Path.Combine(_dir, "p6"), plain = Path.Combine(_dir, "p6-plain");
        var a = CliRunner.Run("compress", CompressionOrt.TinyShapes, "-o", calibrated, "--method", "palettize", "--bits", "6", "--components", "unet", "--calibration-steps", "2");
        Assert.True(a.ExitCode == 0, a.Error);
        Assert.Contains("8 prompts × 2 steps", ReadCalibration(calibrated));
        var b = CliRunner.Run("compress", CompressionOrt.TinyShapes, "-o", plain, "--method", "palettize", "--bits", "6", "--components", "unet", "--no-calibration", "-q");
        Assert.True(b.ExitCode == 0, b.Error);
        using var model = OnnxModel.Load(Path.Combine(plain, "unet", "model.onnx"));
        Assert.Null(ActivationRanges.ReadFrom(model.Proto, "unet"));

        // Served as int8: the palettized convolutions and matrix products run on ONNX Runtime's integer kernels.
        var served = EdgeDiffusion.Runtime.Int8Serving.TryCreate(Path.Combine(calibrated, "unet", "model.onnx"), threads: 1);
        Assert.NotNull(served);
        var ops = CompressionOrt.OptimizedOpTypes(served!, EdgeDiffusion.Runtime.SessionSettings.DecompressionEntries(EdgeDiffusion.Runtime.DecompressionMode.Int8));
        Assert.True(ops.Count(o => o == "QLinearConv") > 10, string.Join(",", ops.Distinct()));
        Assert.True(ops.Count(o => o == "MatMulIntegerToFloat") > 20, string.Join(",", ops.Distinct()));
        Assert.Null(EdgeDiffusion.Runtime.Int8Serving.TryCreate(Path.Combine(plain, "unet", "model.onnx"), threads: 1));
    }

    private static string ReadCalibration(string folder)
    {
        using var model = OnnxModel.Load(Path.Combine(folder, "unet", "model.onnx"));
        return ActivationRanges.ReadFrom(model.Proto, "unet")!.Calibration;
    }
}
