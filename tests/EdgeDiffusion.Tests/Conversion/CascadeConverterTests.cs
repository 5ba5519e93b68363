using System.Text.Json.Nodes;
using EdgeDiffusion.Conversion;
using EdgeDiffusion.Pipelines;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// Converts Fixtures/tiny-cascade (a diffusers StableCascadeCombinedPipeline-style folder with seeded weights: prior F32,
/// decoder F16 with pixels and repeat mappers, Stage A BF16 with its encoder and codebook, CLIPTextModelWithProjection F32;
/// written by training/fixtures/make_tiny_cascade_checkpoint.py) and compares every stage with that script's PyTorch
/// outputs (training/tiny-cascade/models.py's modules, float64).
/// </summary>
public class CascadeConverterTests(ITestOutputHelper output)
{
    private static readonly string Source = Path.Combine(PyTorchReference.FixtureDir, "tiny-cascade");

    private static readonly Lazy<string> Converted = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-cascade"), "out");
        DiffusersConverter.Convert(Source, dir);
        return dir;
    });

    [Theory]
    [InlineData("prior_prior", "prior_prior")]
    [InlineData("decoder", "decoder")]
    [InlineData("vqgan", "vqgan")]
    [InlineData("text_encoder", "text_encoder")]
    [InlineData("prior_text_encoder", "text_encoder")]
    public void ConvertedStage_MatchesThePyTorchReference(string component, string referenceName)
    {
        var reference = PyTorchReference.Load("tiny-cascade.reference.json")[referenceName]!;
        PyTorchReference.AssertMatches(reference, Path.Combine(Converted.Value, component, "model.onnx"), output, component);
    }

    [Fact]
    public void ConvertedFolder_IsOneGenerateRuns()
    {
        Assert.True(CascadeFolder.IsCascade(Converted.Value));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(Converted.Value, "model_index.json")))!;
        Assert.Equal("StableCascadeCombinedPipeline", index["_class_name"]!.ToString());
        Assert.Equal(Path.GetFullPath(Source), index["_edgediffusion"]!["converted_from"]!.ToString());
        foreach (var copied in new[] { "prior_tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json", "prior_scheduler/scheduler_config.json" })
            Assert.Equal(File.ReadAllText(Path.Combine(Source, copied)), File.ReadAllText(Path.Combine(Converted.Value, copied)));
        using var pipeline = StableCascadePipeline.Load(Converted.Value);
        var result = pipeline.Generate(new CascadeRequest { Prompt = "a red circle", Seed = 3, Width = 64, Height = 64, PriorSteps = 2, DecoderSteps = 2 });
        Assert.Equal(3 * 64 * 64, result.Images[0].Length);
        Assert.All(result.Images[0], v => Assert.True(float.IsFinite(v)));
    }

    [Theory]
    [InlineData("prior_prior", "prior")]
    [InlineData("decoder", "decoder")]
    [InlineData("vqgan", "vqgan")]
    public void StageFolder_ConvertsAlone_UnderItsStandardName(string folder, string component)
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-cascade"), "out");
        var messages = new List<string>();
        DiffusersConverter.Convert(Path.Combine(Source, folder), dir, new ConvertOptions { Progress = messages.Add });
        var reference = PyTorchReference.Load("tiny-cascade.reference.json")[folder]!;
        PyTorchReference.AssertMatches(reference, Path.Combine(dir, component, "model.onnx"), output, component);
    }

    [Fact]
    public void MissingStage_IsNamed()
    {
        string copy = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "cascade");
        foreach (var file in Directory.EnumerateFiles(Source, "*", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}decoder{Path.DirectorySeparatorChar}")))
        {
            string target = Path.Combine(copy, Path.GetRelativePath(Source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(copy, output));
        Assert.Equal(ConversionProblem.MissingComponent, e.Problem);
        Assert.Contains("decoder", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("stage_c.safetensors", "prior_prior", "prior")]
    [InlineData("stage_b.safetensors", "decoder", "decoder")]
    public void StabilitySingleFile_FusedAttention_MatchesThePyTorchReference(string file, string configFolder, string component)
    {
        // the same stored values as the diffusers folder, with q/k/v fused into attn.in_proj_* (and Stage B's clip_mapper)
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-cascade"), "out");
        DiffusersConverter.Convert(Path.Combine(PyTorchReference.FixtureDir, "tiny-cascade-stability", file), dir,
            new ConvertOptions { ConfigFolder = Path.Combine(Source, configFolder) });
        var reference = PyTorchReference.Load("tiny-cascade.reference.json")[configFolder]!;
        PyTorchReference.AssertMatches(reference, Path.Combine(dir, component, "model.onnx"), output, $"{file} {component}");
    }

    [Fact]
    public void StabilitySingleFile_WithoutConfig_SaysWhatToPass()
    {
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(Path.Combine(PyTorchReference.FixtureDir, "tiny-cascade-stability", "stage_c.safetensors"), output));
        Assert.Equal(ConversionProblem.UnsupportedConfig, e.Problem);
        Assert.Contains("Stage C", e.Message);
        Assert.Contains("--config", e.Message);
        Assert.Contains("--arch cascade-prior-lite", e.Message);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void StabilitySingleFile_ShapesAreCheckedAgainstTheLitePreset()
    {
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(Path.Combine(PyTorchReference.FixtureDir, "tiny-cascade-stability", "stage_b.safetensors"),
            Path.Combine(TestData.NewTempDir("edgediff-convert"), "out"), new ConvertOptions { Architecture = "cascade-decoder-lite" }));
        Assert.Equal(ConversionProblem.ShapeMismatch, e.Problem);
        Assert.Contains("clip_mapper.weight", e.Message);
    }

    [Fact]
    public void Bf16VariantWeights_AreFound()
    {
        // Stable Cascade's repositories ship diffusion_pytorch_model.bf16.safetensors beside (or instead of) the plain file
        string stage = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "vqgan");
        Directory.CreateDirectory(stage);
        File.Copy(Path.Combine(Source, "vqgan", "config.json"), Path.Combine(stage, "config.json"));
        File.Copy(Path.Combine(Source, "vqgan", "diffusion_pytorch_model.safetensors"), Path.Combine(stage, "diffusion_pytorch_model.bf16.safetensors"));
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-cascade"), "out");
        DiffusersConverter.Convert(stage, dir);
        PyTorchReference.AssertMatches(PyTorchReference.Load("tiny-cascade.reference.json")["vqgan"]!, Path.Combine(dir, "vqgan", "model.onnx"), output, "vqgan (bf16 variant)");
    }

    [Fact]
    public void Float16Dtype_DecoderWithRepeatedLevels_MatchesThePyTorchReference()
    {
        // the decoder's weights are stored F16, so kept float16 they are the same values; the repeated up level reads its
        // shared weights through the same Cast as its first run
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-cascade"), "out");
        DiffusersConverter.Convert(Path.Combine(Source, "decoder"), dir, new ConvertOptions { DType = "float16" });
        PyTorchReference.AssertMatches(PyTorchReference.Load("tiny-cascade.reference.json")["decoder"]!, Path.Combine(dir, "decoder", "model.onnx"), output, "decoder (float16)");
    }
}
