using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Conversion;
using EdgeDiffusion.Tests.Checkpoints;
using EdgeDiffusion.Tests.Onnx;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// Converts Fixtures/tiny-sd (a diffusers-layout checkpoint of the tiny preset written by
/// training/fixtures/make_tiny_sd_checkpoint.py from seeded torch weights: UNet F16, VAE BF16, text encoder F32) and
/// compares each converted component with the outputs of that script's independent PyTorch implementation (float64).
/// </summary>
public class DiffusersConverterTests(ITestOutputHelper output)
{
    private static readonly string FixtureDir = PyTorchReference.FixtureDir;
    private static readonly string Source = Path.Combine(FixtureDir, "tiny-sd");

    private static readonly Lazy<string> Converted = new(() =>
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        DiffusersConverter.Convert(Source, dir);
        return dir;
    });

    [Theory]
    [InlineData("text_encoder")]
    [InlineData("unet")]
    [InlineData("vae_decoder")]
    [InlineData("vae_encoder")]
    public void ConvertedComponent_MatchesThePyTorchReference(string component) =>
        PyTorchReference.AssertMatches(PyTorchReference.Load("tiny-sd.reference.json")[component]!, Path.Combine(Converted.Value, component, "model.onnx"), output, component);

    [Fact]
    public void Convert_WritesACompleteFolder_NamingItsSource()
    {
        string dir = Converted.Value;
        foreach (var c in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
        {
            Assert.True(File.Exists(Path.Combine(dir, c, "model.onnx")), c);
            Assert.True(File.Exists(Path.Combine(dir, c, "config.json")), c);
        }
        foreach (var f in new[] { "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json" })
            Assert.Equal(File.ReadAllText(Path.Combine(Source, f)), File.ReadAllText(Path.Combine(dir, f)));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")))!;
        Assert.Equal(Path.GetFullPath(Source), index["_edgediffusion"]!["converted_from"]!.ToString());
        Assert.Equal("tiny", index["_edgediffusion"]!["architecture"]!.ToString());
        Assert.False(Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(dir)!).Any(p => p.Contains(".tmp-")), "no staging folder left");
        var vae = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "vae_decoder", "config.json")))!;
        Assert.Equal(0.18215, vae["scaling_factor"]!.GetValue<double>(), 5);
    }

    [Fact]
    public void ArchOption_ChecksTheShapes()
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var result = DiffusersConverter.Convert(Source, dir, new ConvertOptions { Architecture = "tiny" });
        Assert.Equal("tiny", result.Preset);
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(Source, dir + "2", new ConvertOptions { Architecture = "sd15" }));
        Assert.Equal(ConversionProblem.ArchitectureMismatch, e.Problem);
        Assert.Contains("is not sd15", e.Message);
    }

    // ---------------------------------------------------------------- typed errors

    private static string CopyOfSource()
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "tiny-sd");
        foreach (var file in Directory.EnumerateFiles(Source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dir, Path.GetRelativePath(Source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return dir;
    }

    /// <summary>Rewrites text_encoder/model.safetensors with <paramref name="edit"/> applied to its tensor list.</summary>
    private static void EditTextEncoder(string source, Func<List<SafetensorsBytes.Tensor>, List<SafetensorsBytes.Tensor>> edit)
    {
        string path = Path.Combine(source, "text_encoder", "model.safetensors");
        List<SafetensorsBytes.Tensor> tensors;
        using (var file = SafetensorsFile.Open(path))
            tensors = [.. file.Names.Select(n => { var i = file.Get(n); return new SafetensorsBytes.Tensor(n, i.DType.Name(), i.Shape.ToArray(), file.ReadBytes(n)); })];
        File.WriteAllBytes(path, SafetensorsBytes.Build(edit(tensors)));
    }

    private static ConversionException ConvertFails(string source)
    {
        string output = Path.Combine(TestData.NewTempDir("edgediff-convert"), "out");
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(source, output));
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(output), "nothing written on failure");
        return e;
    }

    [Fact]
    public void MissingKey_IsNamed()
    {
        string source = CopyOfSource();
        EditTextEncoder(source, ts => [.. ts.Where(t => t.Name != "text_model.encoder.layers.1.mlp.fc2.bias")]);
        var e = ConvertFails(source);
        Assert.Equal(ConversionProblem.MissingKeys, e.Problem);
        Assert.Equal(["text_model.encoder.layers.1.mlp.fc2.bias"], e.Keys);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void ExtraKey_IsNamed()
    {
        string source = CopyOfSource();
        EditTextEncoder(source, ts => [.. ts, new SafetensorsBytes.Tensor("text_projection.weight", "F32", [2], SafetensorsBytes.Float32(1f, 2f))]);
        var e = ConvertFails(source);
        Assert.Equal(ConversionProblem.UnusedKeys, e.Problem);
        Assert.Equal(["text_projection.weight"], e.Keys);
    }

    [Fact]
    public void PositionIds_AreAKnownNonParameter()
    {
        using var file = SafetensorsFile.Open(Path.Combine(Source, "text_encoder", "model.safetensors"));
        Assert.Contains(DiffusersConverter.ClipPositionIds, file.Names); // present in the fixture, and the conversion above succeeds
    }

    [Fact]
    public void WrongShape_NamesTheKeyBothShapesAndTheFile()
    {
        string source = CopyOfSource();
        string config = Path.Combine(source, "text_encoder", "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!;
        json["intermediate_size"] = 48;
        File.WriteAllText(config, json.ToJsonString());
        var e = ConvertFails(source);
        Assert.Equal(ConversionProblem.ShapeMismatch, e.Problem);
        Assert.Contains("text_model.encoder.layers.0.mlp.fc1.weight", e.Message);
        Assert.Contains("[64, 32]", e.Message);
        Assert.Contains("[48, 32]", e.Message);
        Assert.Contains(Path.Combine("text_encoder", "model.safetensors"), e.File);
    }

    [Theory]
    [InlineData("unet", "flip_sin_to_cos", "false")]
    [InlineData("unet", "down_block_types", "[\"CrossAttnDownBlock2D\", \"AttnDownBlock2D\"]")]
    [InlineData("unet", "class_embed_type", "\"timestep\"")]
    [InlineData("vae", "latents_mean", "[0.1]")]
    [InlineData("text_encoder", "hidden_act", "\"relu\"")]
    public void UnsupportedConfigValue_NamesTheKey(string component, string key, string value)
    {
        string source = CopyOfSource();
        string config = Path.Combine(source, component, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!;
        json[key] = JsonNode.Parse(value);
        File.WriteAllText(config, json.ToJsonString());
        var e = ConvertFails(source);
        Assert.Equal(ConversionProblem.UnsupportedConfig, e.Problem);
        Assert.Equal([key], e.Keys);
        Assert.StartsWith(config + ": " + key, e.Message);
    }

    [Fact]
    public void MissingComponentFolder_IsNamed()
    {
        string source = CopyOfSource();
        Directory.Delete(Path.Combine(source, "vae"), recursive: true);
        var e = ConvertFails(source);
        Assert.Equal(ConversionProblem.MissingComponent, e.Problem);
        Assert.Equal(Path.Combine(source, "vae"), e.File);
    }

    [Fact]
    public void Float16Kept_RunsAndAgreesWithFloat32WithinFloat16Rounding()
    {
        // the UNet is stored F16, so keeping float16 stores the same values: outputs equal float32's to float rounding
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert"), "f16");
        var written = DiffusersConverter.Convert(Source, dir, new ConvertOptions { DType = "float16" });
        var f32 = written.Components.Zip(DiffusersConverter.Convert(Source, dir + "-f32").Components);
        var model = EdgeDiffusion.Onnx.OnnxModel.Load(Path.Combine(dir, "unet", "model.onnx"));
        Assert.All(model.Proto.Graph.Initializer.Where(t => t.Name.EndsWith(".weight", StringComparison.Ordinal)),
            t => Assert.Equal((int)EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType.Float16, t.DataType));
        // half the weight bytes; the tiny models' graphs and small tensors are a larger share than a full model's
        Assert.All(f32, pair => Assert.True(pair.First.FileBytes < pair.Second.FileBytes * (pair.First.Name == "unet" ? 0.6 : 0.75), pair.First.Name));
        Assert.Equal("float16", JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "model_index.json")))!["_edgediffusion"]!["dtype"]!.ToString());
        foreach (var component in new[] { "unet", "text_encoder" })
        {
            var reference = JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir, "tiny-sd.reference.json")))![component]!;
            var feeds = reference["inputs"]!.AsObject().Select(kv => PyTorchReference.Feed(kv.Key, kv.Value!)).ToArray();
            var half = OrtRunner.RunFile(Path.Combine(dir, component, "model.onnx"), feeds);
            var full = OrtRunner.RunFile(Path.Combine(dir + "-f32", component, "model.onnx"), feeds);
            foreach (var (name, a) in full)
            {
                double max = a.Values.Zip(half[name].Values, (x, y) => Math.Abs(x - y)).Max();
                double scale = a.Values.Max(Math.Abs);
                output.WriteLine($"{component}.{name}: float16-kept vs float32 max abs difference {max:E2} (values up to {scale:F3})");
                // F16 sources are exact; the F32 text encoder rounds each weight by ≤ 2^-11 relative
                Assert.True(max <= (component == "unet" ? 1e-5 : 2e-3 * Math.Max(1, scale)), $"{component}.{name}: {max:E3}");
            }
        }
    }
}

public class DiffusersConverterStreamingTests
{
    private static readonly string FixtureDir = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures");

    [Fact]
    public void ExternalData_HoldsTheSameWeights()
    {
        // every component over 0 bytes streams its large weights to model.onnx_data through the shared external-data writer
        string root = TestData.NewTempDir("edgediff-convert");
        string inline = Path.Combine(root, "inline"), streamed = Path.Combine(root, "streamed");
        DiffusersConverter.Convert(Path.Combine(FixtureDir, "tiny-sd"), inline);
        var written = DiffusersConverter.Convert(Path.Combine(FixtureDir, "tiny-sd"), streamed, new ConvertOptions { ExternalDataAboveBytes = 0 });
        Assert.All(written.Components, c => Assert.True(c.ExternalData, c.Name));
        Assert.True(File.Exists(Path.Combine(streamed, "unet", "model.onnx_data")));
        var sample = new Feed("latent_sample", [1, 4, 4, 4], OrtRunner.RandomFloats(64, 5));
        var a = OrtRunner.RunFile(Path.Combine(inline, "vae_decoder", "model.onnx"), sample)["sample"];
        var b = OrtRunner.RunFile(Path.Combine(streamed, "vae_decoder", "model.onnx"), sample)["sample"];
        Assert.Equal(a.Values, b.Values);
    }

    [Fact]
    public void LegacyVaeAttentionNames_MapOntoToQKV()
    {
        Assert.Equal(["decoder.mid_block.attentions.0.query.weight"], DiffusersConverter.LegacyVaeAttentionNames("decoder.mid_block.attentions.0.to_q.weight"));
        Assert.Equal(["encoder.mid_block.attentions.0.proj_attn.bias"], DiffusersConverter.LegacyVaeAttentionNames("encoder.mid_block.attentions.0.to_out.0.bias"));
        Assert.Empty(DiffusersConverter.LegacyVaeAttentionNames("decoder.up_blocks.0.resnets.0.conv1.weight"));
    }
}

public class DiffusersConverterSourceTests
{
    private static readonly string Source = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures", "tiny-sd");

    private static Dictionary<string, string> Hashes(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(
            f => Path.GetRelativePath(dir, f), f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f))));

    [Fact]
    public void Source_IsNeverModified_AndOutputInsideItIsRefused()
    {
        var before = Hashes(Source);
        DiffusersConverter.Convert(Source, Path.Combine(TestData.NewTempDir("edgediff-convert"), "out"));
        var e = Assert.Throws<InvalidArgumentException>(() => DiffusersConverter.Convert(Source, Path.Combine(Source, "onnx")));
        Assert.Contains("inside the source", e.Message);
        Assert.Equal(before, Hashes(Source));
        Assert.False(Directory.Exists(Path.Combine(Source, "onnx")));
    }

    [Fact]
    public void TokenizerBeyondTheVocabulary_IsRefused()
    {
        string dir = Path.Combine(TestData.NewTempDir("edgediff-convert-src"), "tiny-sd");
        foreach (var file in Directory.EnumerateFiles(Source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dir, Path.GetRelativePath(Source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        string vocab = Path.Combine(dir, "tokenizer", "vocab.json");
        File.WriteAllText(vocab, File.ReadAllText(vocab).Replace("\"<|endoftext|>\": 529", "\"<|endoftext|>\": 49407", StringComparison.Ordinal));
        var e = Assert.Throws<ConversionException>(() => DiffusersConverter.Convert(dir, Path.Combine(TestData.NewTempDir("edgediff-convert"), "out")));
        Assert.Contains("49407", e.Message);
        Assert.Equal(vocab, e.File);
    }
}
