using System.Text.Json;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Architectures;

public class TinyFolderTests(TinyFolderFixture tiny) : IClassFixture<TinyFolderFixture>
{
    private static readonly StableDiffusionConfig Config = StableDiffusionConfig.Tiny;

    [Fact]
    public void Folder_HasEveryDiffusersFile_AndIsAFewMegabytes()
    {
        foreach (var file in new[]
        {
            "model_index.json", "scheduler/scheduler_config.json",
            "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
            "text_encoder/model.onnx", "text_encoder/config.json", "unet/model.onnx", "unet/config.json",
            "vae_decoder/model.onnx", "vae_decoder/config.json", "vae_encoder/model.onnx", "vae_encoder/config.json",
        })
            Assert.True(File.Exists(Path.Combine(tiny.Folder, file)), $"{file} is missing");
        long total = Directory.EnumerateFiles(tiny.Folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.InRange(total, 100_000, 16L << 20);
        Assert.All(tiny.Written, c => Assert.False(c.ExternalData));
    }

    [Fact]
    public void Models_DeclareOptimumsInputsAndOutputs()
    {
        using var text = OnnxModel.Load(tiny.Model("text_encoder"));
        Assert.Equal(["input_ids"], text.Graph.Input.Select(i => i.Name));
        Assert.Equal((int)DT.Int32, text.Graph.Input[0].Type.TensorType.ElemType);
        Assert.Equal(["last_hidden_state", "pooler_output"], text.Graph.Output.Select(o => o.Name));
        using var unet = OnnxModel.Load(tiny.Model("unet"));
        Assert.Equal(["sample", "timestep", "encoder_hidden_states"], unet.Graph.Input.Select(i => i.Name));
        Assert.Equal((int)DT.Int64, unet.Graph.Input[1].Type.TensorType.ElemType);
        Assert.Equal("batch_size", unet.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimParam);
        Assert.Equal(["out_sample"], unet.Graph.Output.Select(o => o.Name));
        using var decoder = OnnxModel.Load(tiny.Model("vae_decoder"));
        Assert.Equal(["latent_sample"], decoder.Graph.Input.Select(i => i.Name));
        Assert.Equal(["sample"], decoder.Graph.Output.Select(o => o.Name));
        using var encoder = OnnxModel.Load(tiny.Model("vae_encoder"));
        Assert.Equal(["sample"], encoder.Graph.Input.Select(i => i.Name));
        Assert.Equal(["latent_sample"], encoder.Graph.Output.Select(o => o.Name));
        Assert.Contains(unet.Graph.Initializer, t => t.Name == "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight");
        Assert.Contains(encoder.Graph.Initializer, t => t.Name == "quant_conv.weight");
    }

    [Fact]
    public void TextEncoder_Runs_WithExpectedShapes()
    {
        int[] ids = [528, 60, 40, 529, 529, 529, 529, 528, 10, 20, 30, 40, 50, 529];
        var outputs = RunFile(tiny.Model("text_encoder"), new Feed("input_ids", [2, 7], ids));
        Assert.Equal([2L, 7, 32], outputs["last_hidden_state"].Shape);
        Assert.Equal([2L, 32], outputs["pooler_output"].Shape);
        AssertFinite(outputs["last_hidden_state"], "last_hidden_state");
        AssertFinite(outputs["pooler_output"], "pooler_output");
    }

    [Fact]
    public void UNet_Runs_WithExpectedShape()
    {
        var outputs = RunFile(tiny.Model("unet"),
            new Feed("sample", [2, 4, 8, 8], OrtRunner.RandomFloats(2 * 4 * 64, 1)),
            new Feed("timestep", [2], new long[] { 999, 1 }),
            new Feed("encoder_hidden_states", [2, 5, 32], OrtRunner.RandomFloats(2 * 5 * 32, 2)));
        Assert.Equal([2L, 4, 8, 8], outputs["out_sample"].Shape);
        AssertFinite(outputs["out_sample"], "out_sample");
        Assert.Contains(outputs["out_sample"].Values, v => v != 0);
    }

    [Fact]
    public void VaeDecoder_UpsamplesBy8()
    {
        var outputs = RunFile(tiny.Model("vae_decoder"), new Feed("latent_sample", [1, 4, 8, 6], OrtRunner.RandomFloats(4 * 48, 3)));
        Assert.Equal([1L, 3, 64, 48], outputs["sample"].Shape);
        AssertFinite(outputs["sample"], "sample");
    }

    [Fact]
    public void VaeEncoder_DownsamplesBy8_ToFourLatentChannels()
    {
        var outputs = RunFile(tiny.Model("vae_encoder"), new Feed("sample", [2, 3, 64, 48], OrtRunner.RandomFloats(2 * 3 * 64 * 48, 4)));
        Assert.Equal([2L, 4, 8, 6], outputs["latent_sample"].Shape);
        AssertFinite(outputs["latent_sample"], "latent_sample");
    }

    [Theory]
    [InlineData("vae_decoder")]
    [InlineData("vae_encoder")]
    public void VaeConfigs_CarryTheScalingFactor(string component)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Folder, component, "config.json")));
        Assert.Equal(0.18215, doc.RootElement.GetProperty("scaling_factor").GetDouble(), 6);
    }

    [Fact]
    public void SchedulerConfig_IsSd15sPndm()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "scheduler", "scheduler_config.json")));
        var root = doc.RootElement;
        Assert.Equal("PNDMScheduler", root.GetProperty("_class_name").GetString());
        Assert.Equal("scaled_linear", root.GetProperty("beta_schedule").GetString());
        Assert.Equal(0.00085, root.GetProperty("beta_start").GetDouble());
        Assert.Equal(0.012, root.GetProperty("beta_end").GetDouble());
        Assert.Equal(1000, root.GetProperty("num_train_timesteps").GetInt32());
        Assert.Equal(1, root.GetProperty("steps_offset").GetInt32());
        Assert.True(root.GetProperty("skip_prk_steps").GetBoolean());
        Assert.False(root.GetProperty("set_alpha_to_one").GetBoolean());
        Assert.False(root.GetProperty("clip_sample").GetBoolean());
        Assert.Equal("epsilon", root.GetProperty("prediction_type").GetString());
    }

    [Fact]
    public void ModelIndex_NamesTheComponents()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "model_index.json")));
        var root = doc.RootElement;
        Assert.Equal("PNDMScheduler", root.GetProperty("scheduler")[1].GetString());
        foreach (var component in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
            Assert.Equal("OnnxRuntimeModel", root.GetProperty(component)[1].GetString());
        Assert.Equal("CLIPTokenizer", root.GetProperty("tokenizer")[1].GetString());
    }

    [Fact]
    public void TokenizerConfig_PadsWithEndOfText()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(tiny.Folder, "tokenizer", "tokenizer_config.json")));
        Assert.Equal("<|endoftext|>", doc.RootElement.GetProperty("pad_token").GetString());
        Assert.Equal(77, doc.RootElement.GetProperty("model_max_length").GetInt32());
    }

    [Fact]
    public void SameSeed_WritesIdenticalWeights_OtherSeedDiffers()
    {
        string again = TestData.NewTempDir("edgediff-tiny-again");
        string other = TestData.NewTempDir("edgediff-tiny-other");
        try
        {
            StableDiffusionArchitecture.WriteFolder(Config, again, TinyFolderFixture.Seed);
            StableDiffusionArchitecture.WriteFolder(Config, other, TinyFolderFixture.Seed + 1);
            string path = Path.Combine("unet", "model.onnx");
            Assert.Equal(File.ReadAllBytes(Path.Combine(tiny.Folder, path)), File.ReadAllBytes(Path.Combine(again, path)));
            Assert.NotEqual(File.ReadAllBytes(Path.Combine(tiny.Folder, path)), File.ReadAllBytes(Path.Combine(other, path)));
        }
        finally
        {
            Directory.Delete(again, true);
            Directory.Delete(other, true);
        }
    }

    [Fact]
    public void StreamedExternalWeights_LoadAndEqualTheInlineOnes()
    {
        string folder = TestData.NewTempDir("edgediff-tiny-external");
        try
        {
            var written = StableDiffusionArchitecture.WriteFolder(Config, folder, TinyFolderFixture.Seed, new FolderWriteOptions { ExternalDataAboveBytes = 0 });
            Assert.All(written, c => Assert.True(c.ExternalData));
            foreach (var component in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
            {
                string path = Path.Combine(folder, component, "model.onnx");
                Assert.True(File.Exists(path + "_data"), $"{component} has no model.onnx_data");
                using var streamed = OnnxModel.Load(path); // checks every external range
                using var inline = OnnxModel.Load(tiny.Model(component));
                Assert.Contains(streamed.Graph.Initializer, ExternalDataFiles.IsExternal);
                var inlineByName = inline.Graph.Initializer.ToDictionary(t => t.Name);
                Assert.Equal(inlineByName.Count, streamed.Graph.Initializer.Count);
                foreach (var tensor in streamed.Graph.Initializer)
                    Assert.Equal(inline.ReadRawBytes(inlineByName[tensor.Name]), streamed.ReadRawBytes(tensor));
            }
            var feed = new Feed("latent_sample", [1, 4, 8, 8], OrtRunner.RandomFloats(256, 5));
            var a = RunFile(Path.Combine(folder, "vae_decoder", "model.onnx"), feed)["sample"];
            var b = RunFile(tiny.Model("vae_decoder"), feed)["sample"];
            Assert.Equal(b.Values, a.Values);
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [Fact]
    public void TokenizerSource_WithIdsBeyondTheEmbeddings_IsRejected()
    {
        string source = TestData.NewTempDir("edgediff-tok");
        string folder = TestData.NewTempDir("edgediff-tiny-tok");
        try
        {
            File.WriteAllText(Path.Combine(source, "vocab.json"), "{\"<|endoftext|>\": 99999}");
            File.WriteAllText(Path.Combine(source, "merges.txt"), "#version: 0.2\n");
            var e = Assert.Throws<InvalidArgumentException>(() =>
                StableDiffusionArchitecture.WriteFolder(Config, folder, 1, new FolderWriteOptions { TokenizerSource = source }));
            Assert.Contains("99999", e.Message);
        }
        finally
        {
            Directory.Delete(source, true);
            Directory.Delete(folder, true);
        }
    }

    [ClipTokenizerDataFact]
    public void TokenizerSource_CopiesTheRealClipVocabulary_AndSd2PadsWithExclamationMark()
    {
        // sd21's tokenizer with the real vocabulary; the models themselves are not needed, so only the tokenizer is checked.
        var config = StableDiffusionConfig.Tiny with { PadToken = "!" };
        string folder = TestData.NewTempDir("edgediff-tiny-clip");
        try
        {
            var big = config with { TextEncoder = config.TextEncoder with { VocabSize = 49408 } };
            StableDiffusionArchitecture.WriteFolder(big, folder, 1, new FolderWriteOptions { TokenizerSource = TestData.ClipTokenizerDir });
            Assert.Equal(File.ReadAllBytes(Path.Combine(TestData.ClipTokenizerDir, "vocab.json")), File.ReadAllBytes(Path.Combine(folder, "tokenizer", "vocab.json")));
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "tokenizer", "special_tokens_map.json")));
            Assert.Equal("!", doc.RootElement.GetProperty("pad_token").GetString());
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }
}
