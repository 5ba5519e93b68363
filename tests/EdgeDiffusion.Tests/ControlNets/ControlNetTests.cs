using EdgeDiffusion.ControlNets;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Pipelines;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.ControlNets;

/// <summary>
/// ControlNet plumbing on the shipped models/tiny-shapes-controlnet: control images, the guidance range, that a scale of 0
/// (or a range that never acts) gives the plain UNet's picture, that several ControlNets add up, and the load-time checks.
/// </summary>
public sealed class ControlNetTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("controlnet");

    public static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    public static string ControlModel => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes-controlnet");

    public static string Mask(int index) =>
        Directory.GetFiles(Path.Combine(ControlModel, "evaluation", "masks")).Order(StringComparer.Ordinal).ElementAt(index);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static GenerationRequest Request(params ControlImage[] controls) => new()
    {
        Prompt = "a red circle on a blue background", Steps = 8, Guidance = 3, Width = 64, Height = 64, Seed = 5, Controls = controls,
    };

    [Fact]
    public void GuidanceRangeActsOnTheStepsDiffusersKeeps()
    {
        // diffusers: keep = 1 - (i / n < start or (i + 1) / n > end)
        var c = new ControlImage([], 1, 0.25, 0.75);
        Assert.Equal([false, false, true, true, true, true, false, false], Enumerable.Range(0, 8).Select(i => c.ActsOn(i, 8)));
        Assert.All(Enumerable.Range(0, 20), i => Assert.True(new ControlImage([]).ActsOn(i, 20)));
    }

    [Fact]
    public void MaskLoadsAsRgbInZeroToOneAndIsResizedToTheOutputSize()
    {
        var mask = RgbaImage.Load(Mask(0));
        var values = ControlImage.Load(Mask(0), 64, 64);
        Assert.Equal(3 * 64 * 64, values.Length);
        Assert.All(values, v => Assert.True(v is 0f or 1f));
        for (int i = 0; i < 64 * 64; i++)
        {
            Assert.Equal(mask.Pixels[4 * i] / 255f, values[i]);
            Assert.Equal(values[i], values[2 * 64 * 64 + i]);
        }
        var larger = ControlImage.Load(Mask(0), 128, 96);
        Assert.Equal(3 * 128 * 96, larger.Length);
        Assert.Contains(larger, v => v > 0.5f);
    }

    [Fact]
    public void UnreadableControlImagesAreImageExceptionsNamingTheFile()
    {
        string text = Path.Combine(_dir, "mask.png");
        File.WriteAllText(text, "not a picture");
        var e = Assert.Throws<ImageException>(() => ControlImage.Load(text, 64, 64));
        Assert.Contains("mask.png", e.Message);
        var missing = Assert.Throws<ImageException>(() => ControlImage.Load(Path.Combine(_dir, "none.png"), 64, 64));
        Assert.Contains("none.png", missing.Message);
    }

    [Fact]
    public void ScaleZeroAndAnEmptyRangeGiveThePlainPictureAndScaleOneChangesIt()
    {
        using var pipeline = StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([ControlNetFolder.Open(ControlModel)]));
        var mask = ControlImage.Load(Mask(0), 64, 64);
        var plain = pipeline.Generate(Request()).Images[0];
        var zero = pipeline.Generate(Request(new ControlImage(mask, Scale: 0))).Images[0];
        var late = pipeline.Generate(Request(new ControlImage(mask, GuidanceStart: 0.99, GuidanceEnd: 1.0))).Images[0];
        var controlled = pipeline.Generate(Request(new ControlImage(mask))).Images[0];
        // The residual-taking UNet adds zeros: the same arithmetic as the plain UNet, up to ONNX Runtime's fusions.
        Assert.True(MaxDifference(plain, zero) < 1e-3, $"scale 0 differs from the plain UNet by {MaxDifference(plain, zero)}");
        Assert.True(MaxDifference(plain, late) < 1e-3, $"a range acting on no step (8 steps, start 0.99) differs by {MaxDifference(plain, late)}");
        Assert.True(MaxDifference(plain, controlled) > 0.1, "the ControlNet at scale 1 does not change the picture");
        Assert.True(pipeline.Generate(Request(new ControlImage(mask))).Timings.ControlNet > TimeSpan.Zero);
    }

    [Fact]
    public void TwoControlNetsAtHalfScaleEqualOneAtFullScale()
    {
        var folder = ControlNetFolder.Open(ControlModel);
        using var pipeline = StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([folder, folder]));
        Assert.Equal(2, pipeline.LoadedControlNets.Count);
        var mask = ControlImage.Load(Mask(1), 64, 64);
        using var single = StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([folder]));
        var one = single.Generate(Request(new ControlImage(mask))).Images[0];
        var two = pipeline.Generate(Request(new ControlImage(mask, 0.5), new ControlImage(mask, 0.5))).Images[0];
        // 0.5 · r + 0.5 · r = r exactly in float; only the order of the UNet's sums could differ.
        Assert.True(MaxDifference(one, two) < 1e-4, $"differs by {MaxDifference(one, two)}");
        var e = Assert.Throws<InvalidArgumentException>(() => pipeline.Generate(Request(new ControlImage(mask))));
        Assert.Contains("1 control images for 2 ControlNets", e.Message);
    }

    [Fact]
    public void WorksWithImg2ImgAndEveryScheduler()
    {
        using var pipeline = StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([ControlNetFolder.Open(ControlModel)]));
        var mask = ControlImage.Load(Mask(2), 64, 64);
        var init = pipeline.Generate(Request()).Images[0];
        foreach (string scheduler in global::EdgeDiffusion.Schedulers.SchedulerFactory.Names)
        {
            var result = pipeline.Generate(Request(new ControlImage(mask)) with { Scheduler = scheduler, InitImage = init, Strength = 0.6 });
            Assert.Equal(result.Timings.Steps, result.Timings.DenoiserCalls);
            Assert.All(result.Images[0], v => Assert.True(float.IsFinite(v), scheduler));
        }
    }

    [Fact]
    public void ControlWithoutAControlNetAndWrongSizedImagesAreRefused()
    {
        using var plain = StableDiffusionPipeline.Load(Model);
        var mask = ControlImage.Load(Mask(0), 64, 64);
        var e = Assert.Throws<InvalidArgumentException>(() => plain.Generate(Request(new ControlImage(mask))));
        Assert.Contains("without a ControlNet", e.Message);
        var size = Assert.Throws<InvalidArgumentException>(() => plain.Generate(Request(new ControlImage(new float[10]))));
        Assert.StartsWith("--control-image:", size.Message);
        var range = Assert.Throws<InvalidArgumentException>(() => plain.Generate(Request(new ControlImage(mask, GuidanceStart: 0.8, GuidanceEnd: 0.2))));
        Assert.StartsWith("--control-start:", range.Message);
    }

    [Fact]
    public void AControlNetWhoseWidthsDoNotMatchTheUNetIsRefusedAtLoad()
    {
        string folder = Path.Combine(_dir, "narrow");
        FakeControlNet(Path.Combine(folder, "controlnet", "model.onnx"), [32, 32, 32, 64, 64]);
        File.Copy(Path.Combine(ControlModel, "unet", "model.onnx"), Path.Combine(Directory.CreateDirectory(Path.Combine(folder, "unet")).FullName, "model.onnx"));
        var e = Assert.Throws<ModelFolderException>(() => StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([ControlNetFolder.Open(folder)])));
        Assert.Contains(Path.Combine("narrow", "controlnet", "model.onnx"), e.Message);
        Assert.Contains("down_block_0_additional_residual with 32 channels", e.Message);
        Assert.Contains("takes 64", e.Message);
    }

    [Fact]
    public void AControlNetBesideAUNetWithoutResidualInputsIsRefusedAtLoad()
    {
        // No unet/ in the ControlNet folder: the base model's own UNet must take the residuals, and tiny-shapes' does not.
        string folder = Path.Combine(_dir, "bare");
        Directory.CreateDirectory(Path.Combine(folder, "controlnet"));
        File.Copy(Path.Combine(ControlModel, "controlnet", "model.onnx"), Path.Combine(folder, "controlnet", "model.onnx"));
        var e = Assert.Throws<ModelFolderException>(() => StableDiffusionPipeline.Load(Model, controlNets: new ControlNetOptions([ControlNetFolder.Open(folder)])));
        Assert.Contains(Path.Combine("tiny-shapes", "unet", "model.onnx"), e.Message);
        Assert.Contains("takes no ControlNet residuals", e.Message);
        Assert.Throws<ModelFolderException>(() => ControlNetFolder.Open(Path.Combine(_dir, "nothing")));
        Assert.Contains("controlnet/model.onnx", Assert.Throws<ModelFolderException>(() => ControlNetFolder.Open(_dir)).Message);
    }

    [Fact]
    public void TheDefaultModelFindsItsControlNetBesideIt()
    {
        Assert.Equal(Path.GetFullPath(ControlModel), ControlNetFolder.ForModel(Model).Root);
        var e = Assert.Throws<ModelFolderException>(() => ControlNetFolder.ForModel(_dir));
        Assert.Contains("--control-model", e.Message);
    }

    private static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();

    /// <summary>A graph with the ControlNet's inputs whose residual outputs (constants) have the given channel counts.</summary>
    internal static void FakeControlNet(string path, int[] channels)
    {
        var graph = new GraphProto { Name = "fake_controlnet" };
        graph.Input.Add(Value("sample", DT.Float, "batch", 4, "height", "width"));
        graph.Input.Add(Value("timestep", DT.Int64, "batch"));
        graph.Input.Add(Value("encoder_hidden_states", DT.Float, "batch", 77, 64));
        graph.Input.Add(Value("controlnet_cond", DT.Float, "batch", 3, "pixel_height", "pixel_width"));
        graph.Input.Add(Value("conditioning_scale", DT.Float, 1));
        for (int i = 0; i < channels.Length; i++)
        {
            string name = i < channels.Length - 1 ? $"down_block_{i}_additional_residual" : Residuals.Mid;
            graph.Initializer.Add(TensorData.Create<float>($"zeros_{i}", [1, channels[i], 1, 1], new float[channels[i]]));
            graph.Node.Add(new NodeProto { OpType = "Identity", Name = $"id_{i}", Input = { $"zeros_{i}" }, Output = { name } });
            graph.Output.Add(Value(name, DT.Float, "batch", channels[i], $"h{i}", $"w{i}"));
        }
        var model = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "test" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        using var onnx = OnnxModel.FromProto(model);
        onnx.Save(path, new OnnxSaveOptions());
    }

    private static ValueInfoProto Value(string name, DT type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }
}
