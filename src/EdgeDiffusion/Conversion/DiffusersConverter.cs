using System.Diagnostics;
using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using SDA = EdgeDiffusion.Architectures.StableDiffusionArchitecture;

namespace EdgeDiffusion.Conversion;

/// <summary>Options of <see cref="DiffusersConverter.Convert"/>.</summary>
public sealed record ConvertOptions
{
    /// <summary>"auto" (use what the configs, or a single file's shapes, say), or a preset name (sd15, sd21, sd-turbo, tiny): a diffusers folder's converted shapes must equal it; a single file is read as that preset.</summary>
    public string Architecture { get; init; } = "auto";

    /// <summary>"float32" (every weight widened to float32), or "float16" (weights stored float16, each read through a Cast to float32).</summary>
    public string DType { get; init; } = "float32";

    /// <summary>A single-file checkpoint: a CLIP tokenizer folder (vocab.json, merges.txt); null looks beside the checkpoint.</summary>
    public string? TokenizerFolder { get; init; }

    /// <summary>A single-file checkpoint: a diffusers folder whose unet/, vae/ and text_encoder/ config.json describe its architecture (for what shapes cannot say: heads, groups, image size).</summary>
    public string? ConfigFolder { get; init; }

    /// <summary>Compress the converted weights in the same run (the float32 folder is staged in a temporary folder and removed).</summary>
    public ConversionCompression? Compression { get; init; }

    /// <summary>A component whose weights take more bytes than this streams them to model.onnx_data (default 1 GiB, as create-model).</summary>
    public long ExternalDataAboveBytes { get; init; } = 1L << 30;

    /// <summary>
    /// A ControlNet: the UNet its residuals go to (a diffusers Stable Diffusion folder or its unet/ component folder), written
    /// as unet/model.onnx with the residual inputs beside controlnet/; null writes the ControlNet alone.
    /// </summary>
    public string? BaseUNet { get; init; }

    /// <summary>Told "component: what" as each component is written.</summary>
    public Action<string>? Progress { get; init; }
}

/// <summary>
/// How <see cref="DiffusersConverter.Convert"/> compresses what it converts: the encoder chooser edgediff compress uses, made
/// for the converted float32 folder (a saved recipe checks its tensor names against that folder's models), and the options.
/// </summary>
public sealed record ConversionCompression(Func<string, Func<string, WeightUse, IWeightEncoder?>> EncoderForFolder, FolderCompressionOptions Options);

/// <summary>
/// What a conversion wrote: what it is (a preset name, "custom", or a component's class), the Stable Diffusion architecture
/// read (null for a single component other than a whole pipeline) and the preset it equals, if any, each component and,
/// when compressed, the compression report.
/// </summary>
public sealed record ConversionResult(string Architecture, StableDiffusionConfig? Config, string? Preset, IReadOnlyList<WrittenComponent> Components,
    CompressionReport? Compression = null);

/// <summary>
/// Converts a checkpoint into EdgeDiffusion ONNX: a diffusers Stable Diffusion folder (model_index.json, unet/, vae/,
/// text_encoder/, tokenizer/, scheduler/ with safetensors weights; the architecture read from each config.json), a
/// single-file SD 1.x / 2.x checkpoint in the original LDM layout (<see cref="LdmCheckpoint"/>; the architecture read
/// from its shapes), one component folder (UNet, VAE, CLIP text, ControlNet, Stable Cascade stage), a diffusers Stable
/// Cascade folder, or Stability's single-file Cascade stages (<see cref="StabilityCascadeCheckpoint"/>). The graphs are built by the same builders as create-model with every parameter taken from the
/// checkpoint (<see cref="CheckpointParameters"/>), and every checkpoint tensor must be used exactly once (or be a listed
/// known non-weight). The output is staged in a temporary folder beside the target and moved in when complete; the
/// source is only read.
/// </summary>
public static partial class DiffusersConverter
{
    /// <summary>The CLIP text model's buffer of position indices (older transformers save it): not a parameter.</summary>
    public const string ClipPositionIds = "text_model.embeddings.position_ids";

    /// <summary>The note written into a single file's scheduler config (it carries none).</summary>
    public const string StandardSchedulerNote = "written by edgediff convert: a single-file checkpoint carries no scheduler config, so this is the standard Stable Diffusion one (scaled_linear betas 0.00085-0.012, 1000 training steps)";

    /// <summary>The weights of some components: a checkpoint file (or index), how its keys are found, and the components built from it.</summary>
    private sealed record WeightSource(string Path, Func<SafetensorsCheckpoint, CheckpointKeys> Keys, SDA.Component[] Components);

    /// <summary>
    /// Everything a conversion writes, whatever the source layout: the components from their weights (each into NAME/model.onnx
    /// and NAME/config.json), what else the folder holds (tokenizer, scheduler), and model_index.json, to which the
    /// _edgediffusion block (architecture, source, dtype) is added.
    /// </summary>
    private sealed record Plan(string Architecture, StableDiffusionConfig? Config, string? Preset, IReadOnlyList<WeightSource> Weights,
        Action<string> WriteRest, Func<JsonObject> ModelIndex, string ConvertedFrom);

    public static ConversionResult Convert(string source, string output, ConvertOptions? options = null)
    {
        options ??= new ConvertOptions();
        if (string.IsNullOrWhiteSpace(output)) throw new InvalidArgumentException("--output", "needs a folder path");
        if (options.DType is not ("float32" or "fp32" or "float16" or "fp16"))
            throw new InvalidArgumentException("--dtype", $"'{options.DType}' is not known; use float32 or float16");
        if (options.Compression is not null && IsFloat16(options))
            throw new ConversionException(ConversionProblem.NotSupported, source,
                "--compress with --dtype float16 is not supported (the compressors read float32 weights); drop --dtype float16, the compressed weights are smaller anyway");
        string root = Path.GetFullPath(source);
        string outRoot = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        string sourceFolder = (File.Exists(root) ? Path.GetDirectoryName(root)! : root).TrimEnd(Path.DirectorySeparatorChar);
        if (!File.Exists(root) && (outRoot == sourceFolder || outRoot.StartsWith(sourceFolder + Path.DirectorySeparatorChar, StringComparison.Ordinal)))
            throw new InvalidArgumentException("--output", $"{output} is inside the source folder; write the converted model elsewhere (the source is never modified)");
        if (File.Exists(root) && outRoot == root)
            throw new InvalidArgumentException("--output", $"{output} is the checkpoint itself; write the converted model to a new folder");

        if (options.BaseUNet is not null && !IsComponentOf(root, "ControlNetModel"))
            throw new InvalidArgumentException("--unet", "applies to a ControlNet (a folder whose config.json says ControlNetModel)");
        var plan = File.Exists(root) ? SingleFilePlan(root, source, options)
            : IsComponentFolder(root) ? ComponentPlan(root, source, options)
            : IsCascadePipeline(root) ? CascadePlan(root, source, options)
            : Directory.Exists(root) ? DiffusersPlan(root, source, options)
            : throw new ConversionException(ConversionProblem.MissingComponent, source, "not found; pass a diffusers model folder or a single-file .safetensors checkpoint");

        if (options.Compression is not { } compression) return new ConversionResult(plan.Architecture, plan.Config, plan.Preset, WritePlan(plan, output, options));
        // the float32 folder is written once, beside the output, compressed into the output and removed
        string staging = $"{outRoot}.float32-{Environment.ProcessId}";
        try
        {
            var written = WritePlan(plan, staging, options);
            options.Progress?.Invoke($"compressing into {output}");
            var report = ModelFolderCompressor.Compress(staging, output, compression.EncoderForFolder(staging), compression.Options);
            return new ConversionResult(plan.Architecture, plan.Config, plan.Preset, written, report);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    private static bool IsFloat16(ConvertOptions options) => options.DType is "float16" or "fp16";

    /// <summary>A diffusers folder: each component's config.json and weights file.</summary>
    private static Plan DiffusersPlan(string root, string source, ConvertOptions options)
    {
        if (options.TokenizerFolder is not null || options.ConfigFolder is not null)
            throw new InvalidArgumentException(options.TokenizerFolder is not null ? "--tokenizer" : "--config",
                "applies to single-file checkpoints; a diffusers folder's own tokenizer/ and config.json files are used");
        if (!File.Exists(Path.Combine(root, "model_index.json")))
            throw new ConversionException(ConversionProblem.MissingComponent, source, "has no model_index.json; pass a diffusers model folder (the one holding unet/, vae/, text_encoder/)");
        foreach (var dir in new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" })
            if (!Directory.Exists(Path.Combine(root, dir)))
                throw new ConversionException(ConversionProblem.MissingComponent, Path.Combine(source, dir), "component folder not found; a diffusers Stable Diffusion folder has unet/, vae/, text_encoder/, tokenizer/ and scheduler/");

        string schedulerFile = Path.Combine(root, "scheduler", "scheduler_config.json");
        if (!File.Exists(schedulerFile)) throw new ConversionException(ConversionProblem.MissingComponent, schedulerFile, "not found; copy the model's scheduler/scheduler_config.json");
        var config = ReadConfigs(root, source, SchedulerOf(schedulerFile));

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
        string tokenizer = Path.Combine(root, "tokenizer");
        // a StableDiffusionControlNetPipeline: the base model is converted here, its ControlNet as its own folder (generate
        // takes it with --control-model), so the plain UNet stays without residual inputs
        if (IsComponentOf(Path.Combine(root, SDA.ControlNetComponent), "ControlNetModel"))
            options.Progress?.Invoke($"{Path.Combine(source, SDA.ControlNetComponent)}: not part of this conversion; convert it with: edgediff convert {Path.Combine(source, SDA.ControlNetComponent)} -o OUT --unet {source}");
        var components = SDA.Components(config, new ExportOptions()).ToDictionary(c => c.Name);
        return new Plan(config.Name, config, preset,
        [
            new(textWeights, c => new CheckpointKeys(c, [ClipPositionIds]), [components[SDA.TextEncoder]]),
            new(unetWeights, c => new CheckpointKeys(c), [components[SDA.UNet]]),
            // the decoder and the encoder come from the one AutoencoderKL checkpoint: every tensor used by one of them
            new(vaeWeights, c => new CheckpointKeys(c, legacyNames: LegacyVaeAttentionNames), [components[SDA.VaeDecoder], components[SDA.VaeEncoder]]),
        ],
        staging =>
        {
            CheckTokenizer(tokenizer, config.TextEncoder);
            CopyFolder(tokenizer, Path.Combine(staging, "tokenizer"));
            CopyFolder(Path.Combine(root, "scheduler"), Path.Combine(staging, "scheduler"));
        },
        () => PipelineIndex(config, SchedulerClassName(schedulerFile)), root);
    }

    /// <summary>The Stable Diffusion folder's model_index.json naming the scheduler class written.</summary>
    private static JsonObject PipelineIndex(StableDiffusionConfig config, string schedulerClass)
    {
        var index = SDA.ModelIndex(config, 0);
        index["scheduler"] = new JsonArray("diffusers", schedulerClass);
        return index;
    }

    /// <summary>unet/, vae/ and text_encoder/ config.json of a diffusers folder → the pipeline's architecture (image size = sample_size × the VAE's factor).</summary>
    private static StableDiffusionConfig ReadConfigs(string root, string source, SchedulerKind scheduler)
    {
        var (unet, sampleSize) = DiffusersConfigs.ReadUNet(Path.Combine(root, "unet", "config.json"));
        var vae = DiffusersConfigs.ReadVae(Path.Combine(root, "vae", "config.json"));
        var text = DiffusersConfigs.ReadTextEncoder(Path.Combine(root, "text_encoder", "config.json"));
        var config = new StableDiffusionConfig("converted", text, unet, vae, scheduler, StableDiffusionConfig.EndOfText, sampleSize * vae.DownscaleFactor);
        try { config.Validate(); }
        catch (InvalidArgumentException e) { throw new ConversionException(ConversionProblem.UnsupportedConfig, Path.Combine(source, "unet", "config.json"), $"the components do not fit together ({e.Message})"); }
        return config;
    }

    /// <summary>
    /// A single-file LDM checkpoint: the family from the text encoder's prefix, the architecture from --config, --arch or the
    /// shapes (<see cref="LdmCheckpoint.Infer"/>), every key located through <see cref="LdmCheckpoint"/>, the tokenizer from
    /// --tokenizer or beside the file, and the standard scheduler config.
    /// </summary>
    private static Plan SingleFilePlan(string file, string source, ConvertOptions options)
    {
        if (!file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ConversionException(ConversionProblem.NotSupported, source,
                Path.GetExtension(file) is ".ckpt" or ".pt" or ".pth" or ".bin"
                    ? "is a pickled PyTorch checkpoint, which is not read (unpickling runs code); download or save the .safetensors version"
                    : "is not a .safetensors file; pass a single-file .safetensors checkpoint or a diffusers folder");
        IReadOnlyDictionary<string, long[]> shapes;
        using (var checkpoint = SafetensorsCheckpoint.Open(file))
            shapes = checkpoint.Names.ToDictionary(n => n, n => checkpoint.Get(n).Shape.ToArray(), StringComparer.Ordinal);
        if (StabilityCascadeCheckpoint.Is([.. shapes.Keys])) return CascadeStagePlan(file, source, [.. shapes.Keys], options);
        var family = LdmCheckpoint.FamilyOf([.. shapes.Keys], file);

        StableDiffusionConfig config;
        string? preset;
        string architectureSource;
        bool auto = string.Equals(options.Architecture, "auto", StringComparison.OrdinalIgnoreCase);
        if (options.ConfigFolder is { } configs)
        {
            if (!auto) throw new InvalidArgumentException("--arch", "give either --config or --arch, not both");
            var release = family == LdmFamily.Sd1 ? StableDiffusionConfig.Sd15 : StableDiffusionConfig.Sd21;
            config = ReadConfigs(Path.GetFullPath(configs), configs, release.Scheduler) with { PadToken = release.PadToken };
            preset = MatchingPreset(config);
            architectureSource = $"the architecture read from {configs}'s config.json files";
        }
        else if (auto)
        {
            config = LdmCheckpoint.Infer(shapes, family, file);
            try { config.Validate(); }
            catch (InvalidArgumentException e)
            {
                throw new ConversionException(ConversionProblem.UnknownArchitecture, file,
                    $"has shapes no {LdmCheckpoint.Describe(family)} architecture fits ({e.Message}); pass --config DIR (a diffusers folder's configs) or --arch PRESET");
            }
            preset = MatchingPreset(config);
            architectureSource = $"the {LdmCheckpoint.Describe(family)} architecture read from the checkpoint's shapes";
        }
        else
        {
            config = StableDiffusionConfig.Preset(options.Architecture);
            var presetFamily = config.TextEncoder.Activation == ClipActivation.Gelu ? LdmFamily.Sd2 : LdmFamily.Sd1;
            if (presetFamily != family)
                throw new ConversionException(ConversionProblem.ArchitectureMismatch, file,
                    $"is an {LdmCheckpoint.Describe(family)} checkpoint ({(family == LdmFamily.Sd1 ? LdmCheckpoint.Sd1TextPrefix : LdmCheckpoint.Sd2TextPrefix)}*) but --arch {config.Name} is {LdmCheckpoint.Describe(presetFamily)}; use --arch auto");
            preset = config.Name;
            architectureSource = $"--arch {config.Name}";
        }
        config = config with { Name = preset ?? "custom" };

        string tokenizer = TokenizerFor(file, source, options.TokenizerFolder);
        var layout = LdmCheckpoint.For(shapes.Keys, family, config);
        var scheduler = SDA.SchedulerConfig(config.Scheduler);
        scheduler["_edgediffusion"] = StandardSchedulerNote;
        options.Progress?.Invoke($"{Path.GetFileName(file)}: {LdmCheckpoint.Describe(family)} single-file checkpoint, {shapes.Count:N0} tensors ({layout.Ignored.Count:N0} known non-weights left out: {IgnoredSummary(layout.Ignored)})");
        return new Plan(config.Name, config, preset,
            [new(file, c => new CheckpointKeys(c, layout.Ignored, locate: layout.Locate, architectureSource: architectureSource),
                [.. SDA.Components(config, new ExportOptions())])],
            staging =>
            {
                CheckTokenizer(tokenizer, config.TextEncoder);
                SDA.WriteTokenizer(config.TextEncoder, config.PadToken, Path.Combine(staging, "tokenizer"), tokenizer);
                SDA.WriteJson(Path.Combine(staging, "scheduler", "scheduler_config.json"), scheduler);
            },
            () => PipelineIndex(config, SDA.SchedulerClass(config.Scheduler)), file);
    }

    /// <summary>"model_ema.* ×686, alphas_cumprod, …": the known non-weights, the EMA copy and an unused resblock each as one group.</summary>
    private static string IgnoredSummary(IReadOnlyList<string> ignored) =>
        ignored.Count == 0 ? "none"
            : string.Join(", ", ignored.GroupBy(n => n.StartsWith("model_ema.", StringComparison.Ordinal) ? "model_ema.*"
                    : n.Contains(".resblocks.", StringComparison.Ordinal) ? n[..(n.IndexOf('.', n.IndexOf(".resblocks.", StringComparison.Ordinal) + ".resblocks.".Length) + 1)] + "*"
                    : n)
                .Select(g => g.Count() > 1 ? $"{g.Key} ×{g.Count()}" : g.Key).Take(6)) + (ignored.Count > 6 ? ", …" : "");

    /// <summary>--tokenizer, else tokenizer/ beside the checkpoint, else vocab.json + merges.txt beside it; a one-line error naming the fix otherwise.</summary>
    private static string TokenizerFor(string file, string source, string? given)
    {
        if (given is not null) return Path.GetFullPath(given);
        string beside = Path.GetDirectoryName(file)!;
        foreach (var dir in new[] { Path.Combine(beside, "tokenizer"), beside })
            if (File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt"))) return dir;
        throw new ConversionException(ConversionProblem.MissingComponent, source,
            "is a single-file checkpoint, which carries no tokenizer; pass --tokenizer DIR (a CLIP tokenizer folder with vocab.json and merges.txt), or put tokenizer/ beside the checkpoint");
    }

    /// <summary>Writes the plan's components, tokenizer, scheduler and model_index.json into a staging folder moved to <paramref name="output"/> when complete.</summary>
    private static IReadOnlyList<WrittenComponent> WritePlan(Plan plan, string output, ConvertOptions options)
    {
        return SDA.WriteStaged(output, staging =>
        {
            var list = new List<WrittenComponent>();
            foreach (var weights in plan.Weights)
            {
                using var checkpoint = SafetensorsCheckpoint.Open(weights.Path);
                var keys = weights.Keys(checkpoint);
                foreach (var component in weights.Components)
                {
                    list.Add(Write(component, staging, keys, options));
                    SDA.WriteJson(Path.Combine(staging, component.Name, "config.json"), component.Config());
                }
                keys.ThrowIfIncomplete();
            }
            plan.WriteRest(staging);
            var index = plan.ModelIndex();
            index["_edgediffusion"] = new JsonObject
            {
                ["architecture"] = plan.Architecture,
                ["weights"] = "converted",
                ["converted_from"] = plan.ConvertedFrom,
                ["dtype"] = IsFloat16(options) ? "float16" : "float32",
            };
            SDA.WriteJson(Path.Combine(staging, "model_index.json"), index);
            return list;
        });
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
        bool external = (IsFloat16(options) ? bytes / 2 : bytes) > options.ExternalDataAboveBytes;
        if (external)
        {
            using var sink = new CheckpointParameters(keys, modelPath, OnnxSaveOptions.External(), IsFloat16(options));
            ModelProto model = component.Build(sink);
            keys.ThrowIfMissing();
            sink.Commit();
            ModelFiles.WriteProto(model, modelPath);
        }
        else
        {
            using var sink = new CheckpointParameters(keys, keepFloat16: IsFloat16(options));
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
    private static string Weights(string root, string component, string stem) => WeightsIn(Path.Combine(root, component), stem);

    /// <summary>
    /// The weights file in a component folder: stem.safetensors, else the fp16 variant, else the bf16 one (Stable Cascade
    /// ships bf16 variants), else a sharded index of one of them.
    /// </summary>
    private static string WeightsIn(string dir, string stem)
    {
        foreach (var candidate in new[] { $"{stem}.safetensors", $"{stem}.fp16.safetensors", $"{stem}.bf16.safetensors",
                     $"{stem}.safetensors.index.json", $"{stem}.fp16.safetensors.index.json", $"{stem}.bf16.safetensors.index.json" })
        {
            string path = Path.Combine(dir, candidate);
            if (File.Exists(path)) return path;
        }
        string hint = File.Exists(Path.Combine(dir, $"{stem}.bin")) || File.Exists(Path.Combine(dir, $"{stem}.fp16.bin"))
            ? $"; only .bin (pickle) weights are there, which are not read: download the .safetensors files"
            : "";
        throw new ConversionException(ConversionProblem.MissingComponent, dir, $"has no {stem}.safetensors (nor a .fp16 / .bf16 variant or a sharded index){hint}");
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
