using System.Text.Json.Nodes;

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
}
