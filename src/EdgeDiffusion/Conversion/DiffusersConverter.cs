using System.Diagnostics;
using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using SDA = EdgeDiffusion.Architectures.StableDiffusionArchitecture;

namespace EdgeDiffusion.Conversion;

/// <summary>Options of <see cref="DiffusersConverter.Convert"/>.</summary>
public sealed record ConvertOptions
{
    /// <summary>"auto" (use what the configs say), or a preset name (sd15, sd21, sd-turbo, tiny) the converted shapes must equal.</summary>
    public string Architecture { get; init; } = "auto";

    /// <summary>"float32" (the only one implemented); "float16" is refused with a one-line error.</summary>
    public string DType { get; init; } = "float32";

    /// <summary>A component whose weights take more bytes than this streams them to model.onnx_data (default 1 GiB, as create-model).</summary>
    public long ExternalDataAboveBytes { get; init; } = 1L << 30;

    /// <summary>Told "component: what" as each component is written.</summary>
    public Action<string>? Progress { get; init; }
}

/// <summary>What a conversion wrote: the architecture read (and the preset it equals, if any) and each component.</summary>
public sealed record ConversionResult(StableDiffusionConfig Config, string? Preset, IReadOnlyList<WrittenComponent> Components);

/// <summary>
/// Converts a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ with
/// safetensors weights) into an EdgeDiffusion ONNX folder: the architecture is read from each component's config.json,
/// the graphs are built by the same builders as create-model with every parameter taken from the checkpoint by name
/// (<see cref="CheckpointParameters"/>), and every checkpoint tensor must be used exactly once. The output is staged in a
/// temporary folder beside the target and moved in when complete; the source is only read.
/// </summary>
public static class DiffusersConverter
{
    /// <summary>The CLIP text model's buffer of position indices (older transformers save it): not a parameter.</summary>
    public const string ClipPositionIds = "text_model.embeddings.position_ids";

    public static ConversionResult Convert(string source, string output, ConvertOptions? options = null)
    {
        options ??= new ConvertOptions();
        if (string.IsNullOrWhiteSpace(output)) throw new InvalidArgumentException("--output", "needs a folder path");
        if (options.DType is not ("float32" or "fp32"))
            throw new ConversionException(ConversionProblem.NotSupported, source,
                $"--dtype {options.DType} is not implemented yet; convert with --dtype float32 (then edgediff compress can shrink the weights)");
        string root = Path.GetFullPath(source);
        if (File.Exists(root))
            throw new ConversionException(ConversionProblem.NotSupported, source,
                "is a single file; only diffusers folders (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) are converted so far");
        if (!Directory.Exists(root)) throw new ConversionException(ConversionProblem.MissingComponent, source, "not found; pass a diffusers model folder");
        if (!File.Exists(Path.Combine(root, "model_index.json")))
            throw new ConversionException(ConversionProblem.MissingComponent, source, "has no model_index.json; pass a diffusers model folder (the one holding unet/, vae/, text_encoder/)");
        string outRoot = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        if (outRoot == root.TrimEnd(Path.DirectorySeparatorChar) || outRoot.StartsWith(root.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new InvalidArgumentException("--output", $"{output} is inside the source folder; write the converted model elsewhere (the source is never modified)");

        foreach (var dir in new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" })
            if (!Directory.Exists(Path.Combine(root, dir)))
                throw new ConversionException(ConversionProblem.MissingComponent, Path.Combine(source, dir), "component folder not found; a diffusers Stable Diffusion folder has unet/, vae/, text_encoder/, tokenizer/ and scheduler/");

        var (unet, sampleSize) = DiffusersConfigs.ReadUNet(Path.Combine(root, "unet", "config.json"));
        var vae = DiffusersConfigs.ReadVae(Path.Combine(root, "vae", "config.json"));
        var text = DiffusersConfigs.ReadTextEncoder(Path.Combine(root, "text_encoder", "config.json"));
        string schedulerFile = Path.Combine(root, "scheduler", "scheduler_config.json");
        if (!File.Exists(schedulerFile)) throw new ConversionException(ConversionProblem.MissingComponent, schedulerFile, "not found; copy the model's scheduler/scheduler_config.json");
        var config = new StableDiffusionConfig("converted", text, unet, vae, SchedulerOf(schedulerFile), StableDiffusionConfig.EndOfText, sampleSize * vae.DownscaleFactor);
        try { config.Validate(); }
        catch (InvalidArgumentException e) { throw new ConversionException(ConversionProblem.UnsupportedConfig, Path.Combine(source, "unet", "config.json"), $"the components do not fit together ({e.Message})"); }

        string? preset = MatchingPreset(config);
        if (!string.Equals(options.Architecture, "auto", StringComparison.OrdinalIgnoreCase))
        {
            var wanted = StableDiffusionConfig.Preset(options.Architecture);
            if (FirstDifference(config, wanted) is { } difference)
                throw new ConversionException(ConversionProblem.ArchitectureMismatch, source, $"is not {wanted.Name}: {difference}; use --arch auto to convert what the configs describe");
            preset = wanted.Name;
        }
        config = config with { Name = preset ?? "custom" };

        string unetWeights = Weights(root, "unet", "diffusion_pytorch_model");
        string vaeWeights = Weights(root, "vae", "diffusion_pytorch_model");
        string textWeights = Weights(root, "text_encoder", "model");

        var written = SDA.WriteStaged(output, staging =>
        {
            var list = new List<WrittenComponent>();
            var components = SDA.Components(config, new ExportOptions()).ToDictionary(c => c.Name);
            using (var checkpoint = SafetensorsCheckpoint.Open(textWeights))
            {
                var keys = new CheckpointKeys(checkpoint, [ClipPositionIds]);
                list.Add(Write(components[SDA.TextEncoder], staging, keys, options));
                keys.ThrowIfIncomplete();
            }
            using (var checkpoint = SafetensorsCheckpoint.Open(unetWeights))
            {
                var keys = new CheckpointKeys(checkpoint);
                list.Add(Write(components[SDA.UNet], staging, keys, options));
                keys.ThrowIfIncomplete();
            }
            using (var checkpoint = SafetensorsCheckpoint.Open(vaeWeights))
            {
                // the decoder and the encoder come from the one AutoencoderKL checkpoint: every tensor used by one of them
                var keys = new CheckpointKeys(checkpoint, legacyNames: LegacyVaeAttentionNames);
                list.Add(Write(components[SDA.VaeDecoder], staging, keys, options));
                list.Add(Write(components[SDA.VaeEncoder], staging, keys, options));
                keys.ThrowIfIncomplete();
            }
            SDA.WriteJson(Path.Combine(staging, SDA.TextEncoder, "config.json"), SDA.TextEncoderJson(config.TextEncoder));
            SDA.WriteJson(Path.Combine(staging, SDA.UNet, "config.json"), SDA.UNetJson(config));
            SDA.WriteJson(Path.Combine(staging, SDA.VaeDecoder, "config.json"), SDA.VaeJson(config));
            SDA.WriteJson(Path.Combine(staging, SDA.VaeEncoder, "config.json"), SDA.VaeJson(config));
            CheckTokenizer(Path.Combine(root, "tokenizer"), config.TextEncoder);
            CopyFolder(Path.Combine(root, "tokenizer"), Path.Combine(staging, "tokenizer"));
            CopyFolder(Path.Combine(root, "scheduler"), Path.Combine(staging, "scheduler"));
            var index = SDA.ModelIndex(config, 0);
            index["_edgediffusion"] = new JsonObject
            {
                ["architecture"] = config.Name,
                ["weights"] = "converted",
                ["converted_from"] = root,
                ["dtype"] = "float32",
            };
            index["scheduler"] = new JsonArray("diffusers", SchedulerClassName(schedulerFile));
            SDA.WriteJson(Path.Combine(staging, "model_index.json"), index);
            return list;
        });
        return new ConversionResult(config, preset, written);
    }

    /// <summary>Builds one component with its weights from <paramref name="keys"/> and writes it to root/name/model.onnx.</summary>
    private static WrittenComponent Write(SDA.Component component, string root, CheckpointKeys keys, ConvertOptions options)
    {
        var clock = Stopwatch.StartNew();
        string dir = Path.Combine(root, component.Name);
        Directory.CreateDirectory(dir);
        string modelPath = Path.Combine(dir, "model.onnx");
        var shapes = new ShapeOnlyParameters();
        component.Build(shapes);
        long bytes = shapes.Declared.Sum(p => p.Bytes);
        bool external = bytes > options.ExternalDataAboveBytes;
        if (external)
        {
            using var sink = new CheckpointParameters(keys, modelPath, OnnxSaveOptions.External());
            ModelProto model = component.Build(sink);
            keys.ThrowIfMissing();
            sink.Commit();
            ModelFiles.WriteProto(model, modelPath);
        }
        else
        {
            using var sink = new CheckpointParameters(keys);
            ModelProto model = component.Build(sink);
            keys.ThrowIfMissing();
            OnnxModel.FromProto(model, dir).Save(modelPath, OnnxSaveOptions.Inline);
        }
        long fileBytes = new FileInfo(modelPath).Length + (external ? new FileInfo(modelPath + "_data").Length : 0);
        options.Progress?.Invoke($"{component.Name}: {shapes.Count:N0} parameters from {Path.GetFileName(keys.Path)}, {fileBytes / 1048576.0:F1} MiB{(external ? " (external data)" : "")} in {clock.Elapsed.TotalSeconds:F1} s");
        return new WrittenComponent(component.Name, shapes.Count, fileBytes, external);
    }

    /// <summary>Older diffusers checkpoints name the VAE's mid-block attention query/key/value/proj_attn (diffusers renames them on load).</summary>
    internal static IEnumerable<string> LegacyVaeAttentionNames(string name)
    {
        if (!name.Contains(".mid_block.attentions.", StringComparison.Ordinal)) yield break;
        foreach (var (now, then) in new[] { (".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.") })
            if (name.Contains(now, StringComparison.Ordinal)) yield return name.Replace(now, then, StringComparison.Ordinal);
    }

    /// <summary>The component's weights: name.safetensors, else the fp16 variant, else a sharded index. Pickled .bin weights are refused.</summary>
    private static string Weights(string root, string component, string stem)
    {
        string dir = Path.Combine(root, component);
        foreach (var candidate in new[] { $"{stem}.safetensors", $"{stem}.fp16.safetensors", $"{stem}.safetensors.index.json", $"{stem}.fp16.safetensors.index.json" })
        {
            string path = Path.Combine(dir, candidate);
            if (File.Exists(path)) return path;
        }
        string hint = File.Exists(Path.Combine(dir, $"{stem}.bin")) || File.Exists(Path.Combine(dir, $"{stem}.fp16.bin"))
            ? $"; only .bin (pickle) weights are there, which are not read: download the .safetensors files"
            : "";
        throw new ConversionException(ConversionProblem.MissingComponent, dir, $"has no {stem}.safetensors (nor .fp16.safetensors or a sharded index){hint}");
    }

    /// <summary>The tokenizer's vocab.json and merges.txt must be there, and every id must have a row in the text encoder's embedding.</summary>
    private static void CheckTokenizer(string dir, ClipTextConfig text)
    {
        string vocab = Path.Combine(dir, "vocab.json");
        foreach (var file in new[] { vocab, Path.Combine(dir, "merges.txt") })
            if (!File.Exists(file)) throw new ConversionException(ConversionProblem.MissingComponent, file, "not found; a CLIP tokenizer folder holds vocab.json and merges.txt");
        long maxId;
        try { maxId = (JsonNode.Parse(File.ReadAllText(vocab)) as JsonObject)?.Max(kv => kv.Value?.GetValue<long>() ?? -1) ?? -1; }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            throw new ConversionException(ConversionProblem.UnsupportedConfig, vocab, $"is not a JSON object of token → id ({e.Message})");
        }
        if (maxId >= text.VocabSize)
            throw new ConversionException(ConversionProblem.UnsupportedConfig, vocab, $"has ids up to {maxId}, beyond the text encoder's vocab_size {text.VocabSize}; the tokenizer does not belong to this text encoder");
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from))
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }

    private static string SchedulerClassName(string file)
    {
        try { return JsonNode.Parse(File.ReadAllText(file))?["_class_name"]?.ToString() ?? "PNDMScheduler"; }
        catch (System.Text.Json.JsonException e) { throw new ConversionException(ConversionProblem.UnsupportedConfig, file, $"is not valid JSON ({e.Message})"); }
    }

    private static SchedulerKind SchedulerOf(string file)
    {
        var json = JsonNode.Parse(File.ReadAllText(file));
        return SchedulerClassName(file) switch
        {
            "DDIMScheduler" when json?["prediction_type"]?.ToString() == "v_prediction" => SchedulerKind.DdimVPrediction,
            "EulerDiscreteScheduler" => SchedulerKind.EulerTrailing,
            _ => SchedulerKind.Pndm,
        };
    }

    /// <summary>
    /// The preset whose every parameter name and shape equal the config's, if one does; sd21 and sd-turbo share shapes, so
    /// among matches the one of the same image size (768² sd21, 512² sd-turbo) wins.
    /// </summary>
    private static string? MatchingPreset(StableDiffusionConfig config) =>
        StableDiffusionConfig.Presets.Where(p => FirstDifference(config, p) is null)
            .OrderBy(p => p.ImageSize == config.ImageSize ? 0 : 1).FirstOrDefault()?.Name;

    /// <summary>The first parameter whose name or shape differs between the two configs' graphs, in words; null when they all agree.</summary>
    internal static string? FirstDifference(StableDiffusionConfig a, StableDiffusionConfig b)
    {
        var ca = SDA.Components(a, new ExportOptions()).ToList();
        var cb = SDA.Components(b, new ExportOptions()).ToList();
        for (int i = 0; i < ca.Count; i++)
        {
            var pa = new ShapeOnlyParameters();
            ca[i].Build(pa);
            var pb = new ShapeOnlyParameters();
            cb[i].Build(pb);
            var mapB = pb.Declared.ToDictionary(p => p.Name);
            foreach (var p in pa.Declared)
            {
                if (!mapB.TryGetValue(p.Name, out var q)) return $"{ca[i].Name} has '{p.Name}', which {b.Name} lacks";
                if (!p.Shape.SequenceEqual(q.Shape)) return $"{ca[i].Name} '{p.Name}' is [{string.Join(", ", p.Shape)}] where {b.Name} has [{string.Join(", ", q.Shape)}]";
            }
            if (pb.Declared.Count != pa.Declared.Count)
                return $"{ca[i].Name} has {pa.Declared.Count} parameters where {b.Name} has {pb.Declared.Count}";
        }
        return null;
    }
}
