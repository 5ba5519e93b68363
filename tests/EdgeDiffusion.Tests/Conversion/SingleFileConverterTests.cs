using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Conversion;
using EdgeDiffusion.Tests.Checkpoints;
using EdgeDiffusion.Tests.Onnx;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// Converts Fixtures/single-file (LDM-layout checkpoints written by training/fixtures/make_single_file_checkpoints.py):
/// tiny-sd1.safetensors holds exactly tiny-sd/'s weights under their LDM names, so its conversion must match
/// tiny-sd.reference.json; tiny-sd2.safetensors (linear projections, OpenCLIP text encoder with fused q/k/v and one unused
/// last resblock) must match tiny-sd2.reference.json, both computed by independent PyTorch modules in float64.
/// </summary>
public class SingleFileConverterTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;
    private static readonly string FixtureDir = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures");
    private static readonly string Sd1 = Path.Combine(FixtureDir, "single-file", "tiny-sd1.safetensors");
    private static readonly string Sd2 = Path.Combine(FixtureDir, "single-file", "tiny-sd2.safetensors");
    private static readonly string Tokenizer = Path.Combine(FixtureDir, "tiny-sd", "tokenizer");

    private static readonly Lazy<string> ConvertedSd1 = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "sd1");
        DiffusersConverter.Convert(Sd1, dir, new ConvertOptions { Architecture = "tiny", TokenizerFolder = Tokenizer });
        return dir;
    });

    private static readonly Lazy<string> ConvertedSd2 = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "sd2");
        DiffusersConverter.Convert(Sd2, dir, new ConvertOptions { ConfigFolder = Path.Combine(FixtureDir, "single-file", "tiny-sd2"), TokenizerFolder = Tokenizer });
        return dir;
    });

    private static readonly Lazy<string> ConvertedDiffusers = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "diffusers");
        DiffusersConverter.Convert(Path.Combine(FixtureDir, "tiny-sd"), dir);
        return dir;
    });

    [Theory]
    [InlineData("sd1", "text_encoder")]
    [InlineData("sd1", "unet")]
    [InlineData("sd1", "vae_decoder")]
    [InlineData("sd1", "vae_encoder")]
    [InlineData("sd2", "text_encoder")]
    [InlineData("sd2", "unet")]
    [InlineData("sd2", "vae_decoder")]
    [InlineData("sd2", "vae_encoder")]
    public void ConvertedComponent_MatchesThePyTorchReference(string variant, string component)
    {
        var inputs = JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir, "tiny-sd.reference.json")))![component]!;
        // the SD 2.x file has its own text encoder and UNet; its VAE is tiny-sd's
        var expected = variant == "sd2" && component is "text_encoder" or "unet"
            ? JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir, "single-file", "tiny-sd2.reference.json")))![component]!
            : inputs;
        var feeds = inputs["inputs"]!.AsObject().Select(kv => PyTorchReference.Feed(kv.Key, kv.Value!)).ToArray();
        string dir = variant == "sd1" ? ConvertedSd1.Value : ConvertedSd2.Value;
        var fetched = OrtRunner.RunFile(Path.Combine(dir, component, "model.onnx"), feeds);
        var fromDiffusers = variant == "sd1" ? OrtRunner.RunFile(Path.Combine(ConvertedDiffusers.Value, component, "model.onnx"), feeds) : null;
        foreach (var (name, reference) in expected["outputs"]!.AsObject())
        {
            var values = reference!["values"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            var actual = fetched[name];
            Assert.Equal(reference["shape"]!.AsArray().Select(v => v!.GetValue<long>()), actual.Shape);
            double max = values.Zip(actual.Values, (e, a) => Math.Abs(e - a)).Max();
            output.WriteLine($"{variant} {component}.{name}: max abs error {max:E2}");
            Assert.True(max <= Tolerance, $"{variant} {component}.{name}: max abs error {max:E3} > {Tolerance}");
            // the same weights under LDM names give the very graph the diffusers folder gives
            if (fromDiffusers is not null) Assert.Equal(fromDiffusers[name].Values, actual.Values);
        }
    }

    [Fact]
    public void ConfigFolder_GivesTheSameModelAsThePreset()
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "out");
        var result = DiffusersConverter.Convert(Sd1, dir, new ConvertOptions { ConfigFolder = Path.Combine(FixtureDir, "tiny-sd"), TokenizerFolder = Tokenizer });
        Assert.Equal("tiny", result.Preset);
        Assert.Equal(File.ReadAllBytes(Path.Combine(ConvertedSd1.Value, "unet", "model.onnx")), File.ReadAllBytes(Path.Combine(dir, "unet", "model.onnx")));
    }

    [Fact]
    public void SingleFile_WritesTheStandardSchedulerAndTokenizer()
    {
        string dir = ConvertedSd1.Value;
        var scheduler = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "scheduler", "scheduler_config.json")))!;
        Assert.Equal("PNDMScheduler", scheduler["_class_name"]!.ToString());
        Assert.Equal(0.00085, scheduler["beta_start"]!.GetValue<double>(), 6);
        Assert.Equal(0.012, scheduler["beta_end"]!.GetValue<double>(), 6);
        Assert.Equal("scaled_linear", scheduler["beta_schedule"]!.ToString());
        Assert.Equal(1000, scheduler["num_train_timesteps"]!.GetValue<int>());
        Assert.Equal(DiffusersConverter.StandardSchedulerNote, scheduler["_edgediffusion"]!.ToString());
        Assert.Equal(File.ReadAllText(Path.Combine(Tokenizer, "vocab.json")), File.ReadAllText(Path.Combine(dir, "tokenizer", "vocab.json")));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")))!;
        Assert.Equal(Path.GetFullPath(Sd1), index["_edgediffusion"]!["converted_from"]!.ToString());
    }

    [Fact]
    public void KnownNonWeights_AreListedNotSilentlyDropped()
    {
        using var sd1 = SafetensorsCheckpoint.Open(Sd1);
        var layout1 = LdmCheckpoint.For(sd1.Names, LdmFamily.Sd1, StableDiffusionConfig.Tiny);
        Assert.Contains("model_ema.decay", layout1.Ignored);
        Assert.Contains("model_ema.num_updates", layout1.Ignored);
        Assert.Contains("betas", layout1.Ignored);
        Assert.Contains("alphas_cumprod", layout1.Ignored);
        Assert.Contains("cond_stage_model.transformer.text_model.embeddings.position_ids", layout1.Ignored);
        Assert.DoesNotContain(layout1.Ignored, n => n.StartsWith(LdmCheckpoint.UNetPrefix, StringComparison.Ordinal));

        using var sd2 = SafetensorsCheckpoint.Open(Sd2);
        var text = StableDiffusionConfig.Tiny.TextEncoder; // two layers used of the file's three resblocks
        var layout2 = LdmCheckpoint.For(sd2.Names, LdmFamily.Sd2, StableDiffusionConfig.Tiny with { TextEncoder = text });
        Assert.Contains("cond_stage_model.model.text_projection", layout2.Ignored);
        Assert.Contains("cond_stage_model.model.logit_scale", layout2.Ignored);
        Assert.Contains("cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight", layout2.Ignored);
        Assert.DoesNotContain("cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight", layout2.Ignored);
    }

    [Fact]
    public void FusedQkv_SplitsIntoThreeRowBlocks()
    {
        using var sd2 = SafetensorsCheckpoint.Open(Sd2);
        var layout = LdmCheckpoint.For(sd2.Names, LdmFamily.Sd2, StableDiffusionConfig.Tiny);
        Assert.Equal(new TensorLocation("cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight", 2, 3),
            layout.Locate("text_model.encoder.layers.1.self_attn.v_proj.weight"));
        Assert.Equal(new TensorLocation("cond_stage_model.model.positional_embedding"), layout.Locate("text_model.embeddings.position_embedding.weight"));
        Assert.Equal(new TensorLocation("first_stage_model.decoder.up.3.block.0.nin_shortcut.weight"), layout.Locate("decoder.up_blocks.0.resnets.0.conv_shortcut.weight"));
        // tiny's up block 0 mirrors level 1, which has no attention: its Upsample is the second module of output_blocks[1]
        Assert.Equal(new TensorLocation("model.diffusion_model.output_blocks.1.1.conv.weight"), layout.Locate("up_blocks.0.upsamplers.0.conv.weight"));
        Assert.Equal(new TensorLocation("model.diffusion_model.input_blocks.2.0.op.bias"), layout.Locate("down_blocks.0.downsamplers.0.conv.bias"));
    }

    [Theory]
    [InlineData("sd15")]
    [InlineData("sd21")]
    public void Infer_ReadsTheReleaseArchitectureFromTheShapes(string presetName)
    {
        // the preset's parameters under their LDM names (as Locate places them), with the extra last resblock SD 2.x files hold
        var preset = StableDiffusionConfig.Preset(presetName);
        var family = presetName == "sd15" ? LdmFamily.Sd1 : LdmFamily.Sd2;
        var shapes = LdmShapes(preset, family);
        var inferred = LdmCheckpoint.Infer(shapes, family, "test.safetensors");
        Assert.Null(DiffusersConverter.FirstDifference(inferred, preset));
        Assert.Equal(preset.UNet.Heads, inferred.UNet.Heads);
        Assert.Equal(preset.TextEncoder.Heads, inferred.TextEncoder.Heads);
        Assert.Equal(preset.TextEncoder.Activation, inferred.TextEncoder.Activation);
        Assert.Equal(preset.ImageSize, inferred.ImageSize);
    }

    internal static Dictionary<string, long[]> LdmShapes(StableDiffusionConfig config, LdmFamily family)
    {
        var layout = LdmCheckpoint.For([family == LdmFamily.Sd1 ? LdmCheckpoint.Sd1TextPrefix + "text_model.x" : LdmCheckpoint.Sd2TextPrefix + "x"], family, config);
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var component in StableDiffusionArchitecture.Components(config, new ExportOptions()))
        {
            var sink = new ShapeOnlyParameters();
            component.Build(sink);
            foreach (var p in sink.Declared)
            {
                var at = layout.Locate(p.Name)!;
                var shape = p.Shape.ToArray();
                shape[0] *= at.Parts;
                shapes[at.Key] = shape;
            }
        }
        if (family == LdmFamily.Sd2)
            shapes[$"{LdmCheckpoint.Sd2TextPrefix}transformer.resblocks.{config.TextEncoder.Layers}.ln_1.weight"] = [config.TextEncoder.Width];
        return shapes;
    }

    // ---------------------------------------------------------------- bad checkpoints

    /// <summary>A copy of the SD 1.x fixture with <paramref name="edit"/> applied to its tensor list.</summary>
    private static string EditedSd1(Func<List<SafetensorsBytes.Tensor>, List<SafetensorsBytes.Tensor>> edit)
    {
        List<SafetensorsBytes.Tensor> tensors;
        using (var file = SafetensorsFile.Open(Sd1))
            tensors = [.. file.Names.Select(n => { var i = file.Get(n); return new SafetensorsBytes.Tensor(n, i.DType.Name(), i.Shape.ToArray(), file.ReadBytes(n)); })];
        string path = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm-src"), "edited.safetensors");
        File.WriteAllBytes(path, SafetensorsBytes.Build(edit(tensors)));
        return path;
    }

    private static ConversionException Fails(string source, ConvertOptions? options = null)
    {
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(source, output, options ?? new ConvertOptions { Architecture = "tiny", TokenizerFolder = Tokenizer }));
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(e.File, e.Message);
        Assert.False(Directory.Exists(output), "nothing written on failure");
        return e;
    }

    [Fact]
    public void MissingKey_IsNamedByItsLdmName()
    {
        const string key = "model.diffusion_model.output_blocks.1.0.skip_connection.weight";
        var e = Fails(EditedSd1(ts => [.. ts.Where(t => t.Name != key)]));
        Assert.Equal(ConversionProblem.MissingKeys, e.Problem);
        Assert.Equal([key], e.Keys);
    }

    [Fact]
    public void UnusedKey_IsNamed()
    {
        const string key = "first_stage_model.loss.logvar";
        var e = Fails(EditedSd1(ts => [.. ts, new SafetensorsBytes.Tensor(key, "F32", [1], SafetensorsBytes.Float32(0f))]));
        Assert.Equal(ConversionProblem.UnusedKeys, e.Problem);
        Assert.Equal([key], e.Keys);
    }

    [Fact]
    public void WrongShape_NamesTheKeyAndBothShapes()
    {
        const string key = "cond_stage_model.transformer.text_model.final_layer_norm.weight";
        var e = Fails(EditedSd1(ts => [.. ts.Select(t => t.Name == key ? t with { Shape = [16], Data = t.Data[..64] } : t)]));
        Assert.Equal(ConversionProblem.ShapeMismatch, e.Problem);
        Assert.Contains(key, e.Message);
        Assert.Contains("[16]", e.Message);
        Assert.Contains("[32]", e.Message);
        Assert.Contains("--arch tiny", e.Message);
    }

    [Fact]
    public void UnknownArchitecture_IsNamed()
    {
        var sdxl = EditedSd1(ts => [.. ts.Where(t => !t.Name.StartsWith("cond_stage_model.", StringComparison.Ordinal)),
            new SafetensorsBytes.Tensor("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", "F32", [1], SafetensorsBytes.Float32(1f))]);
        var e = Fails(sdxl);
        Assert.Equal(ConversionProblem.UnknownArchitecture, e.Problem);
        Assert.Contains("SDXL", e.Message);

        var wrongFamily = Fails(Sd1, new ConvertOptions { Architecture = "sd21", TokenizerFolder = Tokenizer });
        Assert.Equal(ConversionProblem.ArchitectureMismatch, wrongFamily.Problem);

        var noFit = Fails(Sd1, new ConvertOptions { TokenizerFolder = Tokenizer }); // auto: the tiny VAE's 8 channels do not take SD's 32 groups
        Assert.Equal(ConversionProblem.UnknownArchitecture, noFit.Problem);
        Assert.Contains("--config DIR", noFit.Message);
    }

    [Fact]
    public void Tokenizer_IsFoundBesideTheCheckpoint_OrNamedAsMissing()
    {
        string dir = TestData.NewTempDir("edgediff-convert-ldm-src");
        string file = Path.Combine(dir, "model.safetensors");
        File.Copy(Sd1, file);
        var e = Fails(file, new ConvertOptions { Architecture = "tiny" });
        Assert.Equal(ConversionProblem.MissingComponent, e.Problem);
        Assert.Contains("--tokenizer DIR", e.Message);

        Directory.CreateDirectory(Path.Combine(dir, "tokenizer"));
        foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(Tokenizer, f), Path.Combine(dir, "tokenizer", f));
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert-ldm"), "out");
        var before = File.ReadAllBytes(file);
        DiffusersConverter.Convert(file, output, new ConvertOptions { Architecture = "tiny" });
        Assert.True(File.Exists(Path.Combine(output, "tokenizer", "vocab.json")));
        Assert.Equal(before, File.ReadAllBytes(file));
    }

    [Fact]
    public void Compress_InTheSamePass_LeavesNoFloat32Folder()
    {
        string root = TestData.NewTempDir("edgediff-convert-ldm");
        string output = Path.Combine(root, "out");
        var encoder = EdgeDiffusion.Compression.WeightEncoders.Create(new EdgeDiffusion.Compression.CompressionSpec { Method = EdgeDiffusion.Compression.CompressionMethod.Palettize, Bits = 6 }.Validate());
        var result = DiffusersConverter.Convert(Sd1, output, new ConvertOptions
        {
            Architecture = "tiny",
            TokenizerFolder = Tokenizer,
            Compression = new ConversionCompression(_ => (_, _) => encoder, new EdgeDiffusion.Compression.FolderCompressionOptions()),
        });
        Assert.NotNull(result.Compression);
        Assert.Equal(["out"], Directory.EnumerateFileSystemEntries(root).Select(Path.GetFileName));
        long compressed = new FileInfo(Path.Combine(output, "unet", "model.onnx")).Length;
        long full = new FileInfo(Path.Combine(ConvertedSd1.Value, "unet", "model.onnx")).Length;
        Assert.True(compressed < full / 2, $"{compressed} vs {full}"); // 6-bit indices; small tensors stay float
        var feeds = new Feed("latent_sample", [1, 4, 4, 4], OrtRunner.RandomFloats(64, 3));
        OrtRunner.AssertFinite(OrtRunner.RunFile(Path.Combine(output, "vae_decoder", "model.onnx"), feeds)["sample"], "compressed decoder");
    }
}

/// <summary>
/// The converter's single-file key names at SD 1.5 shape against the real SD 1.5 checkpoint's key lists
/// (Fixtures/real-keys, taken from a public converter's rename tables; each file names its source and commit).
/// </summary>
public class RealKeyListTests
{
    private static readonly string KeysDir = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures", "real-keys");

    private static IEnumerable<string> Keys(string file) =>
        File.ReadLines(Path.Combine(KeysDir, file)).Where(l => l.Length > 0 && !l.StartsWith('#'));

    [Fact]
    public void Sd15Builders_ExpectExactlyTheRealCheckpointsKeys()
    {
        var expected = new[] { "sd15-unet.txt", "sd15-vae.txt", "sd15-text-encoder.txt" }.SelectMany(Keys).ToHashSet(StringComparer.Ordinal);
        var ours = SingleFileConverterTests.LdmShapes(StableDiffusionConfig.Sd15, LdmFamily.Sd1).Keys.ToHashSet(StringComparer.Ordinal);
        Assert.Equal(1130, expected.Count); // 686 UNet + 248 VAE + 196 text encoder tensors
        Assert.Empty(expected.Except(ours).Order());
        Assert.Empty(ours.Except(expected).Order());
    }
}
