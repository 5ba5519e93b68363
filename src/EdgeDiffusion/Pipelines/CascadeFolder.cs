using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// Where a Stable Cascade model's pieces are. Three layouts are read:
/// <list type="bullet">
/// <item>diffusers' StableCascadeCombinedPipeline: <c>prior_prior/ prior_text_encoder/ prior_tokenizer/ prior_scheduler/
/// decoder/ text_encoder/ tokenizer/ scheduler/ vqgan/</c>;</item>
/// <item>a StableCascadePriorPipeline folder (<c>prior/ text_encoder/ tokenizer/ scheduler/</c>) with a
/// StableCascadeDecoderPipeline folder (<c>decoder/ text_encoder/ tokenizer/ scheduler/ vqgan/</c>), given separately;</item>
/// <item>the one-folder form <c>edgediff bench</c> writes: <c>prior/ decoder/ text_encoder/ tokenizer/ scheduler/
/// vae_decoder/</c> (Stage A's decoder), one text encoder for both stages.</item>
/// </list>
/// Every component folder holds model.onnx (Stage A: its decoder only). Defaults for steps and guidance come from
/// model_index.json's <c>_edgediffusion</c> (prior_steps, decoder_steps, prior_guidance_scale, decoder_guidance_scale,
/// image_size), else diffusers' (20, 10, 4.0, 0.0, 1024).
/// </summary>
public sealed record CascadeFolder(
    string Root,
    string PriorTextEncoder, string PriorTokenizer, string? PriorScheduler, string Prior,
    string DecoderTextEncoder, string DecoderTokenizer, string? DecoderScheduler, string Decoder,
    string Vqgan)
{
    public int PriorSteps { get; init; } = 20;
    public int DecoderSteps { get; init; } = 10;
    public double PriorGuidance { get; init; } = 4.0;
    public double DecoderGuidance { get; init; }
    public int ImageSize { get; init; } = 1024;

    /// <summary>Whether <paramref name="folder"/> holds a Stable Cascade model in one of the layouts (checked before loading anything).</summary>
    public static bool IsCascade(string folder)
    {
        if (!Directory.Exists(folder)) return false;
        string index = Path.Combine(folder, "model_index.json");
        if (File.Exists(index))
        {
            try
            {
                if (JsonNode.Parse(File.ReadAllText(index))?["_class_name"]?.GetValue<string>() is string c && c.StartsWith("StableCascade", StringComparison.Ordinal)) return true;
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException) { }
        }
        return Directory.Exists(Path.Combine(folder, "prior_prior")) || Directory.Exists(Path.Combine(folder, "prior")) && Directory.Exists(Path.Combine(folder, "decoder"));
    }

    /// <summary>Resolves a combined or one-folder model.</summary>
    public static CascadeFolder Open(string folder)
    {
        string root = Path.GetFullPath(folder);
        if (!Directory.Exists(root)) throw new ModelFolderException(folder, "folder not found; pass a Stable Cascade model folder (prior_prior/, decoder/, vqgan/ … or prior/, decoder/, vae_decoder/)");
        CascadeFolder result;
        if (Directory.Exists(Path.Combine(root, "prior_prior")))
        {
            result = new CascadeFolder(root,
                Model(root, "prior_text_encoder"), Dir(root, "prior_tokenizer"), Scheduler(root, "prior_scheduler"), Model(root, "prior_prior"),
                Model(root, "text_encoder"), Dir(root, "tokenizer"), Scheduler(root, "scheduler"), Model(root, "decoder"), Model(root, "vqgan"));
        }
        else
        {
            string text = Model(root, "text_encoder"), tokenizer = Dir(root, "tokenizer");
            string? scheduler = Scheduler(root, "scheduler");
            string stageA = File.Exists(Path.Combine(root, "vqgan", "model.onnx")) ? Model(root, "vqgan") : Model(root, "vae_decoder", "vqgan");
            result = new CascadeFolder(root, text, tokenizer, scheduler, Model(root, "prior"), text, tokenizer, scheduler, Model(root, "decoder"), stageA);
        }
        return result.WithDefaults(root);
    }

    /// <summary>A StableCascadePriorPipeline folder and a StableCascadeDecoderPipeline folder.</summary>
    public static CascadeFolder Open(string priorFolder, string decoderFolder)
    {
        string p = Path.GetFullPath(priorFolder), d = Path.GetFullPath(decoderFolder);
        foreach (var (f, given) in new[] { (p, priorFolder), (d, decoderFolder) })
            if (!Directory.Exists(f)) throw new ModelFolderException(given, "folder not found");
        return new CascadeFolder(p,
            Model(p, "text_encoder"), Dir(p, "tokenizer"), Scheduler(p, "scheduler"), Model(p, "prior"),
            Model(d, "text_encoder"), Dir(d, "tokenizer"), Scheduler(d, "scheduler"), Model(d, "decoder"), Model(d, "vqgan")).WithDefaults(d).WithDefaults(p);
    }

    private CascadeFolder WithDefaults(string root)
    {
        string index = Path.Combine(root, "model_index.json");
        if (!File.Exists(index)) return this;
        JsonNode? meta;
        try { meta = JsonNode.Parse(File.ReadAllText(index))?["_edgediffusion"]; }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFolderException(index, $"is not valid JSON ({e.Message.Split('\n')[0]}); restore it from the model's source");
        }
        if (meta is null) return this;
        int Int(string key, int fallback, int min) => meta[key] is JsonValue v
            ? v.TryGetValue(out int i) && i >= min ? i : throw new ModelFolderException(index, $"_edgediffusion.{key} is {v.ToJsonString()}; write a whole number ≥ {min}")
            : fallback;
        double Number(string key, double fallback) => meta[key] is JsonValue v
            ? v.TryGetValue(out double x) && x >= 0 && double.IsFinite(x) ? x : throw new ModelFolderException(index, $"_edgediffusion.{key} is {v.ToJsonString()}; write a number ≥ 0")
            : fallback;
        return this with
        {
            PriorSteps = Int("prior_steps", PriorSteps, 1),
            DecoderSteps = Int("decoder_steps", DecoderSteps, 1),
            PriorGuidance = Number("prior_guidance_scale", PriorGuidance),
            DecoderGuidance = Number("decoder_guidance_scale", DecoderGuidance),
            ImageSize = Int("image_size", ImageSize, 8),
        };
    }

    private static string Model(string root, string component, string? alternative = null)
    {
        string path = Path.Combine(root, component, "model.onnx");
        if (File.Exists(path)) return path;
        string also = alternative is null ? "" : $" (or {alternative}/model.onnx)";
        throw new ModelFolderException(path, $"is missing{also}; a Stable Cascade folder needs the {Describe(component)}; copy it from the model's source or re-convert the model");
    }

    private static string Dir(string root, string component)
    {
        string path = Path.Combine(root, component);
        return Directory.Exists(path) ? path : throw new ModelFolderException(path, "folder is missing; it must hold the CLIP tokenizer's vocab.json and merges.txt");
    }

    private static string? Scheduler(string root, string component)
    {
        string path = Path.Combine(root, component, "scheduler_config.json");
        return File.Exists(path) ? path : null;
    }

    private static string Describe(string component) => component switch
    {
        "prior_prior" or "prior" => "prior (Stage C)",
        "decoder" => "decoder (Stage B)",
        "vqgan" or "vae_decoder" => "VQGAN decoder (Stage A)",
        _ => "text encoder (CLIP with projection)",
    };

    /// <summary>Numbers from a JSON object file read once, each null when the file or key is absent.</summary>
    internal static IReadOnlyDictionary<string, double?> ReadNumbers(string file, params string[] keys)
    {
        if (!File.Exists(file)) return keys.ToDictionary(k => k, _ => (double?)null);
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(file));
            return keys.ToDictionary(k => k, k => root?[k] is JsonValue v && v.TryGetValue(out double d) ? d : (double?)null);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFolderException(file, $"is not valid JSON ({e.Message.Split('\n')[0]}); fix or delete it");
        }
    }
}
