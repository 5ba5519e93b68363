using System.Text.Json.Nodes;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Conversion;
using EdgeDiffusion.Tests.Checkpoints;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// Converts the component folders of Fixtures/tiny-sd one at a time (config.json + weights, as diffusers saves one model)
/// and compares each graph with the PyTorch reference outputs of make_tiny_sd_checkpoint.py.
/// </summary>
public class ComponentFolderConverterTests(ITestOutputHelper output)
{
    private static readonly string Source = Path.Combine(PyTorchReference.FixtureDir, "tiny-sd");

    private static string Convert(string component)
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-component"), "out");
        DiffusersConverter.Convert(Path.Combine(Source, component), dir);
        return dir;
    }

    [Theory]
    [InlineData("unet", "unet")]
    [InlineData("vae", "vae_decoder")]
    [InlineData("vae", "vae_encoder")]
    [InlineData("text_encoder", "text_encoder")]
    public void ComponentFolder_ConvertsToTheStandardGraph_MatchingPyTorch(string folder, string component)
    {
        string dir = Convert(folder);
        var reference = PyTorchReference.Load("tiny-sd.reference.json")[component]!;
        PyTorchReference.AssertMatches(reference, Path.Combine(dir, component, "model.onnx"), output, component);
        // the source config.json travels with the graph; model_index.json names the class
        Assert.Equal(JsonNode.Parse(File.ReadAllText(Path.Combine(Source, folder, "config.json")))!.ToJsonString(),
            JsonNode.Parse(File.ReadAllText(Path.Combine(dir, component, "config.json")))!.ToJsonString());
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")))!;
        Assert.Equal(Path.Combine(Source, folder), index["_edgediffusion"]!["converted_from"]!.ToString());
    }

    [Fact]
    public void VaeFolder_WritesBothHalves_AndNothingElse()
    {
        string dir = Convert("vae");
        Assert.Equal(["model_index.json", "vae_decoder/config.json", "vae_decoder/model.onnx", "vae_encoder/config.json", "vae_encoder/model.onnx"],
            Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(dir, f).Replace('\\', '/')).Order(StringComparer.Ordinal));
        Assert.Equal("AutoencoderKL", JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")))!["_class_name"]!.ToString());
    }

    [Fact]
    public void UnsupportedClass_IsAOneLineErrorNamingIt()
    {
        string source = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "unet3d");
        Directory.CreateDirectory(source);
        File.WriteAllText(Path.Combine(source, "config.json"), """{"_class_name": "UNetSpatioTemporalConditionModel"}""");
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(source, output));
        Assert.Equal(ConversionProblem.UnsupportedConfig, e.Problem);
        Assert.Contains("'UNetSpatioTemporalConditionModel'", e.Message);
        Assert.Contains("ControlNetModel", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void ExtraTensor_InAComponentFolder_IsNamed()
    {
        string source = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "vae");
        Directory.CreateDirectory(source);
        File.Copy(Path.Combine(Source, "vae", "config.json"), Path.Combine(source, "config.json"));
        using (var file = SafetensorsFile.Open(Path.Combine(Source, "vae", "diffusion_pytorch_model.safetensors")))
        {
            var tensors = file.Names.Select(n => { var i = file.Get(n); return new SafetensorsBytes.Tensor(n, i.DType.Name(), i.Shape.ToArray(), file.ReadBytes(n)); }).ToList();
            tensors.Add(new("decoder.extra.weight", "F32", [2], new byte[8]));
            File.WriteAllBytes(Path.Combine(source, "diffusion_pytorch_model.safetensors"), SafetensorsBytes.Build(tensors));
        }
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(source, Path.Combine(TestData.NewTempDir("edgediff-convert"), "out")));
        Assert.Equal(ConversionProblem.UnusedKeys, e.Problem);
        Assert.Equal(["decoder.extra.weight"], e.Keys);
    }
}
