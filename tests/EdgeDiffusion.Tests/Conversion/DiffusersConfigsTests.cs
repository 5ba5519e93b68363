using EdgeDiffusion.Architectures;
using EdgeDiffusion.Conversion;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// The config.json files the SD 1.5, SD 2.1 and SD-Turbo diffusers repositories ship (as published; keys diffusers added
/// later are absent, as in the originals) read into exactly the shapes of the project's presets.
/// </summary>
public class DiffusersConfigsTests
{
    private const string Sd15UNet = """
        {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu", "attention_head_dim": 8,
         "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
         "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
         "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
         "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
         "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
        """;

    private static string Sd2UNet(int sampleSize) => """
        {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
         "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 1024,
         "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
         "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
         "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": null,
         "only_cross_attention": false, "out_channels": 4, "resnet_time_scale_shift": "default", "sample_size": SIZE,
         "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
         "upcast_attention": true, "use_linear_projection": true}
        """.Replace("SIZE", sampleSize.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static string Vae(int sampleSize) => """
        {"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
         "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": SIZE,
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
        """.Replace("SIZE", sampleSize.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private const string ClipL = """
        {"_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
         "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
         "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
         "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
         "projection_dim": 768, "torch_dtype": "float32", "transformers_version": "4.22.0.dev0", "vocab_size": 49408}
        """;

    private const string ClipH = """
        {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
         "hidden_act": "gelu", "hidden_size": 1024, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
         "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 16,
         "num_hidden_layers": 23, "pad_token_id": 1, "projection_dim": 512, "torch_dtype": "float32", "vocab_size": 49408}
        """;

    private static StableDiffusionConfig Read(string unet, string vae, string text)
    {
        string dir = TestData.NewTempDir("edgediff-configs");
        File.WriteAllText(Path.Combine(dir, "unet.json"), unet);
        File.WriteAllText(Path.Combine(dir, "vae.json"), vae);
        File.WriteAllText(Path.Combine(dir, "text.json"), text);
        var (u, sample) = DiffusersConfigs.ReadUNet(Path.Combine(dir, "unet.json"));
        var v = DiffusersConfigs.ReadVae(Path.Combine(dir, "vae.json"));
        return new StableDiffusionConfig("read", DiffusersConfigs.ReadTextEncoder(Path.Combine(dir, "text.json")), u, v,
            SchedulerKind.Pndm, StableDiffusionConfig.EndOfText, sample * v.DownscaleFactor);
    }

    [Fact]
    public void Sd15Configs_GiveTheSd15Shapes()
    {
        var c = Read(Sd15UNet, Vae(512), ClipL);
        Assert.Null(DiffusersConverter.FirstDifference(c, StableDiffusionConfig.Sd15));
        Assert.Equal(512, c.ImageSize);
        Assert.Equal(0.18215f, c.Vae.ScalingFactor);
        Assert.NotNull(DiffusersConverter.FirstDifference(c, StableDiffusionConfig.Sd21));
    }

    [Theory]
    [InlineData(96, 768)]
    [InlineData(64, 512)]
    public void Sd2Configs_GiveTheSd21Shapes(int sampleSize, int imageSize)
    {
        var c = Read(Sd2UNet(sampleSize), Vae(imageSize), ClipH);
        Assert.Null(DiffusersConverter.FirstDifference(c, StableDiffusionConfig.Sd21));
        Assert.Null(DiffusersConverter.FirstDifference(c, StableDiffusionConfig.SdTurbo));
        Assert.Equal(imageSize, c.ImageSize);
        Assert.Equal(ClipActivation.Gelu, c.TextEncoder.Activation);
    }

    // an SD 1.5 ControlNet config.json in the form diffusers 0.14 writes (the values of lllyasviel's sd-controlnet-* models)
    private const string Sd15ControlNet = """
        {"_class_name": "ControlNetModel", "_diffusers_version": "0.14.0.dev0", "act_fn": "silu", "attention_head_dim": 8,
         "block_out_channels": [320, 640, 1280, 1280], "class_embed_type": null, "conditioning_embedding_out_channels": [16, 32, 96, 256],
         "controlnet_conditioning_channel_order": "rgb", "cross_attention_dim": 768,
         "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
         "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
         "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": null, "only_cross_attention": false,
         "projection_class_embeddings_input_dim": null, "resnet_time_scale_shift": "default", "upcast_attention": false,
         "use_linear_projection": false}
        """;

    [Fact]
    public void Sd15ControlNetConfig_GivesTheSd15ControlNetShapes()
    {
        string path = Path.Combine(TestData.NewTempDir("edgediff-configs"), "config.json");
        File.WriteAllText(path, Sd15ControlNet);
        var read = DiffusersConfigs.ReadControlNet(path);
        var expected = ControlNetModel.Parameters(ControlNetConfig.Sd15);
        Assert.Equal(expected.Select(p => (p.Name, string.Join(",", p.Shape))), ControlNetModel.Parameters(read).Select(p => (p.Name, string.Join(",", p.Shape))));
        // its residuals are exactly the SD 1.5 UNet's skips
        Assert.Equal([320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280], read.ResidualChannels);

        File.WriteAllText(path, Sd15ControlNet.Replace("\"rgb\"", "\"bgr\"", StringComparison.Ordinal));
        var e = Assert.Throws<ConversionException>(() => DiffusersConfigs.ReadControlNet(path));
        Assert.Equal(["controlnet_conditioning_channel_order"], e.Keys);
    }
}
