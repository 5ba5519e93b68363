using System.Globalization;
using System.Text.Json.Nodes;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// A whole Stable Cascade pipeline's architecture: the CLIP text encoder with projection, Stage C (prior), Stage B
/// (decoder) and Stage A (the Paella VQGAN decoder), with the image size the latent sizes follow from.
/// </summary>
public sealed record StableCascadeConfig(
    string Name,
    ClipTextConfig TextEncoder,
    StableCascadeUNetConfig Prior,
    StableCascadeUNetConfig Decoder,
    PaellaVQConfig Vqgan,
    int ImageSize,
    string PadToken = "!")
{
    /// <summary>
    /// Stable Cascade lite at 1024²: ViT-bigG/14 text encoder (694,659,840), Stage C lite (1,030,785,040), Stage B lite
    /// (699,471,248), Stage A decoder (15,706,842).
    /// </summary>
    public static StableCascadeConfig Lite { get; } = new(
        "cascade-lite", ClipTextConfig.OpenClipVitBigG14, StableCascadeUNetConfig.PriorLite, StableCascadeUNetConfig.DecoderLite, PaellaVQConfig.StageA, 1024);

    /// <summary>A few-MB test fixture with every component's structure (two text layers over the tiny tokenizer's vocabulary).</summary>
    public static StableCascadeConfig Tiny { get; } = new(
        "cascade-tiny",
        new ClipTextConfig(TinyClipTokenizer.VocabSize, 32, 2, 2, 64, 77, ClipActivation.Gelu, ProjectionDim: 32),
        StableCascadeUNetConfig.TinyPrior, StableCascadeUNetConfig.TinyDecoder, PaellaVQConfig.Tiny, 64);

    /// <summary>The presets by name: cascade-tiny, cascade-lite.</summary>
    public static IReadOnlyList<StableCascadeConfig> Presets { get; } = [Tiny, Lite];

    /// <summary>The preset called <paramref name="name"/> (case-insensitive).</summary>
    public static StableCascadeConfig Preset(string name) =>
        Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new InvalidArgumentException("architecture", $"'{name}' is not known; use one of {string.Join(", ", Presets.Select(p => p.Name))}");

    /// <summary>Stage C's latent side: the image compressed 42.67× (ceil(size / (1024/24)), as the prior pipeline computes it).</summary>
    public int PriorLatentSize => (int)Math.Ceiling(ImageSize / (1024.0 / 24.0));

    /// <summary>Stage B's latent side: the image over Stage A's factor (4).</summary>
    public int DecoderLatentSize => ImageSize / Vqgan.DownscaleFactor;

    internal void Validate()
    {
        TextEncoder.Validate();
        Prior.Validate();
        Decoder.Validate();
        Vqgan.Validate();
        Check(TextEncoder.ProjectionDim > 0, "the text encoder needs a projection (its text_embeds are the pooled conditioning)");
        Check(Prior.ClipTextChannels == TextEncoder.Width, $"the prior maps {Prior.ClipTextChannels}-wide text but the text encoder is {TextEncoder.Width} wide");
        Check(Prior.ClipTextPooledChannels == TextEncoder.ProjectionDim && Decoder.ClipTextPooledChannels == TextEncoder.ProjectionDim,
            $"the stages' pooled-text widths must equal the text projection's {TextEncoder.ProjectionDim}");
        Check(Decoder.EffnetChannels == Prior.OutChannels, $"the decoder's effnet mapper takes {Decoder.EffnetChannels} channels but the prior makes {Prior.OutChannels}");
        Check(Decoder.InChannels == Vqgan.LatentChannels && Decoder.OutChannels == Vqgan.LatentChannels,
            $"the decoder's {Decoder.InChannels}→{Decoder.OutChannels} channels do not match Stage A's {Vqgan.LatentChannels} latent channels");
        Check(ImageSize >= 1 && ImageSize % Vqgan.DownscaleFactor == 0 && DecoderLatentSize % Decoder.DownscaleFactor == 0,
            $"image size {ImageSize} must be a multiple of {Vqgan.DownscaleFactor * Decoder.DownscaleFactor} (Stage A × Stage B's levels)");
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("stable cascade config", problem);
    }
}

/// <summary>
/// Writes a Stable Cascade ONNX model folder with seeded random weights: model_index.json, text_encoder/, prior/ (Stage C),
/// decoder/ (Stage B), vae_decoder/ (Stage A's VQGAN decoder), each model.onnx + config.json, scheduler/scheduler_config.json
/// and tokenizer/. Components above <see cref="FolderWriteOptions.ExternalDataAboveBytes"/> stream their weights to
/// model.onnx_data (the lite prior, decoder and text encoder are 2.8–4.1 GB each).
/// </summary>
public static class StableCascadeArchitecture
{
    public const string TextEncoder = "text_encoder";
    public const string Prior = "prior";
    public const string Decoder = "decoder";
    public const string VaeDecoder = "vae_decoder";

    /// <summary>Stage A's folder in diffusers' Stable Cascade pipelines (this project's own folders call it vae_decoder).</summary>
    public const string Vqgan = "vqgan";

    /// <summary>Parameter counts per component (vae_decoder: Stage A's decoding path, no codebook), from shapes-only builds.</summary>
    public static IReadOnlyDictionary<string, long> ParameterCounts(StableCascadeConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        return Components(config, new ExportOptions()).ToDictionary(c => c.Name, c =>
        {
            var sink = new ShapeOnlyParameters();
            c.Build(sink);
            return sink.Count;
        });
    }

    /// <summary>
    /// Writes the folder for <paramref name="config"/> into <paramref name="folder"/> (created if needed; existing model files
    /// are replaced, and nothing is moved in unless every file was written). Same seed, same files.
    /// </summary>
    public static IReadOnlyList<WrittenComponent> WriteFolder(StableCascadeConfig config, string folder, ulong seed, FolderWriteOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (string.IsNullOrWhiteSpace(folder)) throw new InvalidArgumentException(nameof(folder), "needs a folder path");
        options ??= new FolderWriteOptions();
        config.Validate();
        return StableDiffusionArchitecture.WriteStaged(folder, root => WriteInto(config, root, seed, options));
    }

    private static List<WrittenComponent> WriteInto(StableCascadeConfig config, string root, ulong seed, FolderWriteOptions options)
    {
        Directory.CreateDirectory(root);
        StableDiffusionArchitecture.WriteTokenizer(config.TextEncoder, config.PadToken, Path.Combine(root, "tokenizer"), options.TokenizerSource);
        var written = new List<WrittenComponent>();
        foreach (var component in Components(config, options.Export))
        {
            string dir = Path.Combine(root, component.Name);
            Directory.CreateDirectory(dir);
            written.Add(StableDiffusionArchitecture.WriteComponent(component, dir, seed, options));
            StableDiffusionArchitecture.WriteJson(Path.Combine(dir, "config.json"), component.Config());
        }
        StableDiffusionArchitecture.WriteJson(Path.Combine(root, "scheduler", "scheduler_config.json"), SchedulerJson());
        StableDiffusionArchitecture.WriteJson(Path.Combine(root, "model_index.json"), ModelIndex(config, seed));
        return written;
    }

    private static IEnumerable<StableDiffusionArchitecture.Component> Components(StableCascadeConfig c, ExportOptions export) =>
    [
        new(TextEncoder, s => ClipTextModel.Build(c.TextEncoder, s, export), () => StableDiffusionArchitecture.TextEncoderJson(c.TextEncoder)),
        new(Prior, s => StableCascadeUNet.Build(c.Prior, s, export, "prior"), () => UNetJson(c.Prior, c.PriorLatentSize)),
        new(Decoder, s => StableCascadeUNet.Build(c.Decoder, s, export, "decoder"), () => UNetJson(c.Decoder, c.DecoderLatentSize)),
        new(VaeDecoder, s => PaellaVQDecoder.Build(c.Vqgan, s, export), () => VqganJson(c.Vqgan)),
    ];

    private static JsonObject ModelIndex(StableCascadeConfig c, ulong seed) => new()
    {
        ["_class_name"] = "StableCascadeCombinedPipeline",
        ["_edgediffusion"] = new JsonObject
        {
            ["architecture"] = c.Name,
            ["weights"] = "random",
            ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["image_size"] = c.ImageSize,
            ["stage_a"] = VaeDecoder,
        },
        ["decoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["prior"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["scheduler"] = new JsonArray("diffusers", "DDPMWuerstchenScheduler"),
        ["text_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["vae_decoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
    };

    /// <summary>DDPMWuerstchenScheduler's defaults (cosine schedule offset s, scaler), which both stages use.</summary>
    private static JsonObject SchedulerJson() => new()
    {
        ["_class_name"] = "DDPMWuerstchenScheduler",
        ["s"] = 0.008,
        ["scaler"] = 1.0,
    };

    internal static JsonObject UNetJson(StableCascadeUNetConfig u, int sampleSize)
    {
        static JsonNode? Optional(int? value) => value is int v ? v : null;
        return new JsonObject
        {
            ["_class_name"] = "StableCascadeUNet",
            ["block_out_channels"] = StableDiffusionArchitecture.Ints(u.BlockOutChannels),
            ["block_types_per_layer"] = new JsonArray([.. u.BlockTypes.Select(level => (JsonNode?)StableDiffusionArchitecture.Strings(level.Select(BlockName)))]),
            ["clip_image_in_channels"] = Optional(u.ClipImageChannels),
            ["clip_seq"] = u.ClipSeq,
            ["clip_text_in_channels"] = Optional(u.ClipTextChannels),
            ["clip_text_pooled_in_channels"] = u.ClipTextPooledChannels,
            ["conditioning_dim"] = u.ConditioningDim,
            ["down_blocks_repeat_mappers"] = StableDiffusionArchitecture.Ints(u.DownRepeatMappers),
            ["down_num_layers_per_block"] = StableDiffusionArchitecture.Ints(u.DownLayers),
            ["effnet_in_channels"] = Optional(u.EffnetChannels),
            ["in_channels"] = u.InChannels,
            ["kernel_size"] = u.KernelSize,
            ["num_attention_heads"] = StableDiffusionArchitecture.Ints(u.Heads),
            ["out_channels"] = u.OutChannels,
            ["patch_size"] = u.PatchSize,
            ["pixel_mapper_in_channels"] = Optional(u.PixelMapperChannels),
            ["sample_size"] = sampleSize,
            ["self_attn"] = u.SelfAttention,
            ["switch_level"] = u.SwitchLevel is null ? null : new JsonArray([.. u.SwitchLevel.Select(b => (JsonNode?)b)]),
            ["timestep_conditioning_type"] = StableDiffusionArchitecture.Strings(u.TimestepConditioning),
            ["timestep_ratio_embedding_dim"] = u.TimestepEmbeddingDim,
            ["up_blocks_repeat_mappers"] = StableDiffusionArchitecture.Ints(u.UpRepeatMappers),
            ["up_num_layers_per_block"] = StableDiffusionArchitecture.Ints(u.UpLayers),
        };
    }

    private static string BlockName(CascadeBlock block) => block switch
    {
        CascadeBlock.ResBlock => "SDCascadeResBlock",
        CascadeBlock.TimestepBlock => "SDCascadeTimestepBlock",
        _ => "SDCascadeAttnBlock",
    };

    private static JsonObject VqganJson(PaellaVQConfig v) => new()
    {
        ["_class_name"] = "PaellaVQModel",
        ["bottleneck_blocks"] = v.BottleneckBlocks,
        ["embed_dim"] = v.EmbedDim,
        ["in_channels"] = v.ImageChannels,
        ["latent_channels"] = v.LatentChannels,
        ["levels"] = v.Levels,
        ["num_vq_embeddings"] = v.NumVqEmbeddings,
        ["out_channels"] = v.ImageChannels,
        ["scale_factor"] = v.ScaleFactor,
        ["up_down_scale_factor"] = v.UpDownScaleFactor,
    };
}
