using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using SDA = EdgeDiffusion.Architectures.StableDiffusionArchitecture;

namespace EdgeDiffusion.Conversion;

public static partial class DiffusersConverter
{
    /// <summary>The component classes a single component folder may hold, as their config.json names them.</summary>
    private static readonly string[] ComponentClasses =
        ["UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel", "CLIPTextModelWithProjection", "ControlNetModel", "StableCascadeUNet", "PaellaVQModel"];

    /// <summary>A folder as diffusers saves one model: config.json and weights, no model_index.json.</summary>
    private static bool IsComponentFolder(string root) =>
        Directory.Exists(root) && !File.Exists(Path.Combine(root, "model_index.json")) && File.Exists(Path.Combine(root, "config.json"));

    private static bool IsComponentOf(string root, string className) =>
        IsComponentFolder(root) && ComponentClass(Path.Combine(root, "config.json")) == className;

    /// <summary>config.json's _class_name (diffusers), else its one architectures entry (transformers); null when it names neither.</summary>
    private static string? ComponentClass(string configPath)
    {
        var json = SourceConfig(configPath);
        if (json["_class_name"] is JsonValue name && name.TryGetValue(out string? diffusers)) return diffusers;
        return json["architectures"] is JsonArray { Count: 1 } a && a[0] is JsonValue v && v.TryGetValue(out string? transformers) ? transformers : null;
    }

    /// <summary>A component's config.json as it is (copied beside the converted graph, so its sizes and defaults travel with it).</summary>
    private static JsonObject SourceConfig(string configPath)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject
                ?? throw new ConversionException(ConversionProblem.UnsupportedConfig, configPath, "is not a JSON object");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ConversionException(ConversionProblem.UnsupportedConfig, configPath, $"is not valid JSON ({e.Message})");
        }
    }

    /// <summary>
    /// A single component folder (config.json + weights, as diffusers' save_pretrained writes one model): the class from
    /// config.json, converted into the folder names a model folder uses (unet/, vae_decoder/ + vae_encoder/, text_encoder/,
    /// controlnet/, prior/ or decoder/, vqgan/), each with its source config.json, and a model_index.json naming the class.
    /// </summary>
    private static Plan ComponentPlan(string root, string source, ConvertOptions options)
    {
        RefuseStableDiffusionOptions(options, "a component folder");
        var (className, weights) = ComponentWeights(root, null, source, options);
        return new Plan(className, null, null, weights, _ => { }, () => new JsonObject { ["_class_name"] = className }, root);
    }

    /// <summary>--tokenizer, --config (single files) and --arch (Stable Diffusion presets) do not apply to <paramref name="what"/>, whose config.json files say it all.</summary>
    private static void RefuseStableDiffusionOptions(ConvertOptions options, string what)
    {
        if (options.TokenizerFolder is not null || options.ConfigFolder is not null)
            throw new InvalidArgumentException(options.TokenizerFolder is not null ? "--tokenizer" : "--config",
                $"applies to single-file checkpoints; {what} brings its own config.json files (and tokenizer)");
        if (!string.Equals(options.Architecture, "auto", StringComparison.OrdinalIgnoreCase))
            throw new InvalidArgumentException("--arch", $"applies to Stable Diffusion checkpoints; {what}'s architecture is what its config.json files say (use --arch auto)");
    }

    /// <summary>
    /// The weights and graphs of one component folder: its class (config.json's _class_name or architectures) and the
    /// graphs built from its weights, written under <paramref name="name"/> (null: the class's standard folder name).
    /// </summary>
    private static (string Class, List<WeightSource> Weights) ComponentWeights(string root, string? name, string source, ConvertOptions options)
    {
        string configPath = Path.Combine(root, "config.json");
        string? className = ComponentClass(configPath);
        var export = new ExportOptions();
        Func<JsonObject> config = () => SourceConfig(configPath);
        SDA.Component Component(string standard, Func<ParameterSink, Onnx.Protobuf.ModelProto> build) => new(name ?? standard, build, config);
        switch (className)
        {
            case "UNet2DConditionModel":
            {
                var (unet, _) = DiffusersConfigs.ReadUNet(configPath);
                return (className, [new(WeightsIn(root, "diffusion_pytorch_model"), c => new CheckpointKeys(c), [Component(SDA.UNet, s => UNet2DConditionModel.Build(unet, s, export))])]);
            }
            case "AutoencoderKL":
            {
                var vae = DiffusersConfigs.ReadVae(configPath);
                // the decoder and the encoder come from the one checkpoint: every tensor used by one of them
                return (className, [new(WeightsIn(root, "diffusion_pytorch_model"), c => new CheckpointKeys(c, legacyNames: LegacyVaeAttentionNames),
                    [new(SDA.VaeDecoder, s => AutoencoderKL.BuildDecoder(vae, s, export), config), new(SDA.VaeEncoder, s => AutoencoderKL.BuildEncoder(vae, s, export), config)])]);
            }
            case "CLIPTextModel" or "CLIPTextModelWithProjection":
            {
                var text = DiffusersConfigs.ReadTextEncoder(configPath);
                return (className, [new(WeightsIn(root, "model"), c => new CheckpointKeys(c, [ClipPositionIds]), [Component(SDA.TextEncoder, s => ClipTextModel.Build(text, s, export))])]);
            }
            case "ControlNetModel":
                return (className, ControlNetWeights(root, source, configPath, options));
            case "StableCascadeUNet":
            {
                var unet = DiffusersConfigs.ReadStableCascadeUNet(configPath);
                // the prior maps CLIP text and image embeddings, the decoder the prior's latents (effnet)
                string stage = unet.ClipTextChannels is not null ? StableCascadeArchitecture.Prior : StableCascadeArchitecture.Decoder;
                return (className, [new(WeightsIn(root, "diffusion_pytorch_model"), c => new CheckpointKeys(c),
                    [Component(stage, s => StableCascadeUNet.Build(unet, s, export, stage))])]);
            }
            case "PaellaVQModel":
            {
                var vqgan = DiffusersConfigs.ReadPaellaVQ(configPath);
                return (className, [new(WeightsIn(root, "diffusion_pytorch_model"), c => new CheckpointKeys(c, c.Names.Where(IsStageAEncoderKey)),
                    [Component(StableCascadeArchitecture.Vqgan, s => PaellaVQDecoder.Build(vqgan, s, export))])]);
            }
            default:
                throw new ConversionException(ConversionProblem.UnsupportedConfig, configPath,
                    $"{(className is null ? "names no _class_name" : $"_class_name is '{className}'")}; a component folder converts when it holds one of {string.Join(", ", ComponentClasses)} (or pass a whole diffusers pipeline folder with model_index.json)",
                    ["_class_name"]);
        }
    }

    /// <summary>
    /// Stage A's encoder (in_block, down_blocks) and codebook (vquantizer): generation only decodes, so they are known
    /// non-weights of the converted folder, listed in the progress line rather than used.
    /// </summary>
    private static bool IsStageAEncoderKey(string key) =>
        key.StartsWith("in_block.", StringComparison.Ordinal) || key.StartsWith("down_blocks.", StringComparison.Ordinal) || key.StartsWith("vquantizer.", StringComparison.Ordinal);

    /// <summary>
    /// A ControlNetModel folder → controlnet/model.onnx (the signature OnnxControlNet runs) with its config.json plus
    /// residual_channels; with <see cref="ConvertOptions.BaseUNet"/> also unet/model.onnx, that UNet with the residual inputs,
    /// which the ControlNet folder then carries (ONNX has no optional inputs, so the plain UNet cannot take them).
    /// </summary>
    private static List<WeightSource> ControlNetWeights(string root, string source, string configPath, ConvertOptions options)
    {
        var controlNet = DiffusersConfigs.ReadControlNet(configPath);
        var weights = new List<WeightSource>
        {
            new(WeightsIn(root, "diffusion_pytorch_model"), c => new CheckpointKeys(c),
            [
                new(SDA.ControlNetComponent, s => ControlNetModel.Build(controlNet, s, new ExportOptions()), () =>
                {
                    var json = SourceConfig(configPath);
                    json["residual_channels"] = new JsonArray([.. controlNet.ResidualChannels.Select(c => (JsonNode)c)]);
                    return json;
                }),
            ]),
        };
        if (options.BaseUNet is { } given)
        {
            string baseRoot = Path.GetFullPath(given);
            string unetFolder = File.Exists(Path.Combine(baseRoot, "model_index.json")) ? Path.Combine(baseRoot, SDA.UNet) : baseRoot;
            string unetConfig = Path.Combine(unetFolder, "config.json");
            if (!File.Exists(unetConfig))
                throw new InvalidArgumentException("--unet", $"{given} holds no config.json (nor unet/config.json); pass the diffusers Stable Diffusion folder the ControlNet was trained for, or its unet/ folder");
            var (unet, _) = DiffusersConfigs.ReadUNet(unetConfig);
            var residuals = new ControlNetConfig(unet, controlNet.ConditioningEmbeddingChannels).ResidualChannels;
            if (!residuals.SequenceEqual(controlNet.ResidualChannels) || unet.CrossAttentionDim != controlNet.UNet.CrossAttentionDim || unet.InChannels != controlNet.UNet.InChannels)
                throw new ConversionException(ConversionProblem.ArchitectureMismatch, unetConfig,
                    $"is not the UNet this ControlNet steers: it takes residuals of [{string.Join(", ", residuals)}] channels, {unet.CrossAttentionDim}-wide text and {unet.InChannels} latent channels where {configPath} gives [{string.Join(", ", controlNet.ResidualChannels)}], {controlNet.UNet.CrossAttentionDim} and {controlNet.UNet.InChannels}; pass the base model's folder to --unet");
            weights.Add(new(WeightsIn(unetFolder, "diffusion_pytorch_model"), c => new CheckpointKeys(c),
            [
                new(SDA.UNet, s => UNet2DConditionModel.Build(unet, s, new ExportOptions { ControlNetResiduals = true }), () =>
                {
                    var json = SourceConfig(unetConfig);
                    json["_edgediffusion"] = new JsonObject { ["note"] = $"{unetFolder} with the ControlNet residual inputs (same weights)" };
                    return json;
                }),
            ]));
        }
        else options.Progress?.Invoke($"{source}: ControlNet only (no --unet): generate needs a base model whose unet/model.onnx takes the residual inputs; pass --unet BASE to write that UNet beside it");
        return weights;
    }
}
