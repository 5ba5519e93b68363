using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Conversion;

public static partial class DiffusersConverter
{
    /// <summary>Pipeline parts generation never runs (the prior's image encoder for image variations): left out, and said so.</summary>
    private static readonly string[] UnusedPipelineClasses = ["CLIPVisionModelWithProjection", "CLIPImageProcessor"];

    /// <summary>Pipeline parts copied as they are.</summary>
    private static readonly string[] CopiedPipelineClasses = ["CLIPTokenizer", "CLIPTokenizerFast", "DDPMWuerstchenScheduler"];

    /// <summary>A diffusers Stable Cascade folder: its model_index.json names the class (StableCascade…Pipeline).</summary>
    private static bool IsCascadePipeline(string root)
    {
        string index = Path.Combine(root, "model_index.json");
        return File.Exists(index) && SourceConfig(index)["_class_name"] is JsonValue v && v.TryGetValue(out string? name)
            && name.StartsWith("StableCascade", StringComparison.Ordinal);
    }

    /// <summary>
    /// A diffusers Stable Cascade folder (StableCascadeCombinedPipeline, or the Prior / Decoder pipeline alone): every model
    /// its model_index.json lists is converted into a folder of the same name (prior_prior/ or prior/ and decoder/:
    /// StableCascadeUNet; vqgan/: PaellaVQModel's decoder; text_encoder/, prior_text_encoder/: CLIPTextModelWithProjection),
    /// tokenizers and schedulers are copied, and model_index.json is kept with the _edgediffusion block added; the layout is
    /// one CascadeFolder reads, so generate runs the result.
    /// </summary>
    private static Plan CascadePlan(string root, string source, ConvertOptions options)
    {
        RefuseStableDiffusionOptions(options, "a Stable Cascade folder");
        string indexPath = Path.Combine(root, "model_index.json");
        var index = SourceConfig(indexPath);
        string className = index["_class_name"]!.ToString();
        var weights = new List<WeightSource>();
        var copied = new List<string>();
        var leftOut = new List<string>();
        foreach (var (name, entry) in index)
        {
            if (name.StartsWith('_') || entry is not JsonArray { Count: 2 } pair || pair[1] is not JsonValue kind || !kind.TryGetValue(out string? partClass))
                continue; // settings (latent_dim_scale) and parts saved as [null, null]
            string folder = Path.Combine(root, name);
            if (!Directory.Exists(folder))
                throw new ConversionException(ConversionProblem.MissingComponent, folder, $"not found, though model_index.json lists {name} ({partClass}); pass the whole downloaded pipeline folder");
            if (UnusedPipelineClasses.Contains(partClass)) leftOut.Add(name);
            else if (CopiedPipelineClasses.Contains(partClass)) copied.Add(name);
            else weights.AddRange(ComponentWeights(folder, name, Path.Combine(source, name), options).Weights);
        }
        if (weights.Count == 0)
            throw new ConversionException(ConversionProblem.MissingComponent, indexPath, $"lists no model to convert ({className}); pass a diffusers Stable Cascade pipeline folder");
        if (leftOut.Count > 0) options.Progress?.Invoke($"{string.Join(", ", leftOut)}: not used by generate (image variations), left out");
        return new Plan(className, null, null, weights,
            staging =>
            {
                foreach (var name in copied) CopyFolder(Path.Combine(root, name), Path.Combine(staging, name));
            },
            () =>
            {
                var written = SourceConfig(indexPath);
                foreach (var name in leftOut) written[name] = new JsonArray(null, null);
                return written;
            }, root);
    }

    /// <summary>The Stable Cascade stage presets --arch names for a single-file stage (the lite models, whose shapes the builders are checked against).</summary>
    public static IReadOnlyDictionary<string, StableCascadeUNetConfig> CascadeStagePresets { get; } = new Dictionary<string, StableCascadeUNetConfig>(StringComparer.OrdinalIgnoreCase)
    {
        ["cascade-prior-lite"] = StableCascadeUNetConfig.PriorLite,
        ["cascade-decoder-lite"] = StableCascadeUNetConfig.DecoderLite,
    };

    /// <summary>
    /// Stability's single-file Stage C or Stage B (<see cref="StabilityCascadeCheckpoint"/>): it carries no config, so the
    /// architecture is --config's config.json (a diffusers prior/ or decoder/ folder's) or an --arch stage preset; written as
    /// prior/ or decoder/ (model.onnx + config.json) with a model_index.json naming StableCascadeUNet.
    /// </summary>
    private static Plan CascadeStagePlan(string file, string source, IReadOnlyCollection<string> names, ConvertOptions options)
    {
        string stage = StabilityCascadeCheckpoint.StageOf(names);
        string stageName = stage == StableCascadeArchitecture.Prior ? "Stage C (prior)" : "Stage B (decoder)";
        if (options.TokenizerFolder is not null)
            throw new InvalidArgumentException("--tokenizer", $"does not apply to {source}, a Stable Cascade {stageName} checkpoint (it has no text encoder)");
        StableCascadeUNetConfig config;
        Func<JsonObject> configJson;
        string architecture;
        if (options.ConfigFolder is { } given)
        {
            if (!string.Equals(options.Architecture, "auto", StringComparison.OrdinalIgnoreCase))
                throw new InvalidArgumentException("--arch", "give either --config or --arch, not both");
            string configPath = Directory.Exists(given) ? Path.Combine(given, "config.json") : given;
            config = DiffusersConfigs.ReadStableCascadeUNet(configPath);
            configJson = () => SourceConfig(configPath);
            architecture = $"the architecture read from {configPath}";
        }
        else if (CascadeStagePresets.TryGetValue(options.Architecture, out var preset))
        {
            config = preset;
            var lite = StableCascadeConfig.Lite;
            configJson = () => StableCascadeArchitecture.UNetJson(preset, preset.ClipTextChannels is null ? lite.DecoderLatentSize : lite.PriorLatentSize);
            architecture = $"--arch {options.Architecture.ToLowerInvariant()}";
        }
        else
            throw new ConversionException(ConversionProblem.UnsupportedConfig, source,
                $"is a Stable Cascade {stageName} checkpoint, which carries no config; pass --config DIR (the config.json of the matching diffusers {stage}/ folder) or --arch {(stage == StableCascadeArchitecture.Prior ? "cascade-prior-lite" : "cascade-decoder-lite")} for the lite model");
        string configStage = config.ClipTextChannels is not null ? StableCascadeArchitecture.Prior : StableCascadeArchitecture.Decoder;
        if (configStage != stage)
            throw new ConversionException(ConversionProblem.ArchitectureMismatch, source,
                $"is a Stable Cascade {stageName} checkpoint but {architecture} describes the {configStage}; pass the {stage}'s config");
        options.Progress?.Invoke($"{Path.GetFileName(file)}: Stable Cascade {stageName} single-file checkpoint, {names.Count:N0} tensors; {architecture}");
        return new Plan("StableCascadeUNet", null, null,
            [new(file, c => new CheckpointKeys(c, locate: name => StabilityCascadeCheckpoint.Locate(name, c.Contains), architectureSource: architecture),
                [new(stage, s => StableCascadeUNet.Build(config, s, new ExportOptions(), stage), configJson)])],
            _ => { }, () => new JsonObject { ["_class_name"] = "StableCascadeUNet" }, file);
    }
}
