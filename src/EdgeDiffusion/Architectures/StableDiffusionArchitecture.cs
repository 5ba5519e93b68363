using System.Diagnostics;
using System.Text.Json.Nodes;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Architectures;

/// <summary>Options of <see cref="StableDiffusionArchitecture.WriteFolder"/>.</summary>
public sealed record FolderWriteOptions
{
    /// <summary>Graph input/output choices (timestep type, fixed UNet batch, input_ids type, opset).</summary>
    public ExportOptions Export { get; init; } = new();

    /// <summary>
    /// A folder holding a CLIP vocab.json and merges.txt to copy into tokenizer/ (e.g. the real CLIP vocabulary); null
    /// writes the tiny byte-level tokenizer (<see cref="TinyClipTokenizer"/>), whose ids all lie inside any text encoder's vocabulary.
    /// </summary>
    public string? TokenizerSource { get; init; }

    /// <summary>
    /// A component whose weights take more bytes than this streams them to model.onnx_data as they are generated (only one
    /// chunk in memory); smaller ones are built in memory and saved inline. Default 1 GiB, well under protobuf's 2 GB limit.
    /// </summary>
    public long ExternalDataAboveBytes { get; init; } = 1L << 30;

    /// <summary>Told "component: what" as each component is written.</summary>
    public Action<string>? Progress { get; init; }
}

/// <summary>One written component: its subfolder, parameter count and the bytes of its files.</summary>
public sealed record WrittenComponent(string Name, long Parameters, long FileBytes, bool ExternalData);

/// <summary>
/// Writes a complete diffusers/optimum ONNX Stable Diffusion folder with seeded random weights: model_index.json,
/// text_encoder/, unet/, vae_decoder/, vae_encoder/ (each model.onnx + config.json), scheduler/scheduler_config.json and
/// tokenizer/. Useful as a test fixture (tiny) and to measure full-size models without downloading any.
/// </summary>
public static class StableDiffusionArchitecture
{
    public const string TextEncoder = "text_encoder";
    public const string UNet = "unet";
    public const string VaeDecoder = "vae_decoder";
    public const string VaeEncoder = "vae_encoder";
    public const string ControlNetComponent = "controlnet";

    /// <summary>Parameter counts per component (vae_encoder includes quant_conv, vae_decoder post_quant_conv), from shapes-only builds.</summary>
    public static IReadOnlyDictionary<string, long> ParameterCounts(StableDiffusionConfig config)
    {
        config.Validate();
        return Components(config, new ExportOptions()).ToDictionary(c => c.Name, c =>
        {
            var sink = new ShapeOnlyParameters();
            c.Build(sink);
            return sink.Count;
        });
    }

    /// <summary>
    /// Writes the folder for <paramref name="config"/> into <paramref name="folder"/> (created if needed; existing model
    /// files are replaced). Weights are U(±1/√fan_in) from <paramref name="seed"/>; the same seed gives the same files.
    /// </summary>
    public static IReadOnlyList<WrittenComponent> WriteFolder(StableDiffusionConfig config, string folder, ulong seed, FolderWriteOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (string.IsNullOrWhiteSpace(folder)) throw new InvalidArgumentException(nameof(folder), "needs a folder path");
        options ??= new FolderWriteOptions();
        config.Validate();
        return WriteStaged(folder, staging => WriteInto(config, staging, seed, options));
    }

    /// <summary>
    /// Writes a ControlNet folder for <paramref name="config"/>'s UNet with seeded random weights: controlnet/model.onnx
    /// (diffusers' ControlNetModel at the UNet's sizes, conditioning embedding [16, 32, 96, 256]) and unet/model.onnx, the
    /// UNet taking its residuals. The UNet draws from the same stream as <see cref="WriteFolder"/>'s unet with the same seed,
    /// so it is that folder's UNet with the residual inputs; <c>generate --model BASE --control-model FOLDER</c> runs the pair.
    /// </summary>
    public static IReadOnlyList<WrittenComponent> WriteControlNetFolder(StableDiffusionConfig config, string folder, ulong seed, FolderWriteOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (string.IsNullOrWhiteSpace(folder)) throw new InvalidArgumentException(nameof(folder), "needs a folder path");
        options ??= new FolderWriteOptions();
        config.Validate();
        var controlNet = new ControlNetConfig(config.UNet, ControlNetConfig.DefaultConditioningEmbeddingChannels);
        Component[] components =
        [
            new(ControlNetComponent, s => ControlNetModel.Build(controlNet, s, options.Export), () =>
            {
                var json = UNetJson(config);
                json["_class_name"] = "ControlNetModel";
                json["conditioning_embedding_out_channels"] = Ints(controlNet.ConditioningEmbeddingChannels);
                json["residual_channels"] = Ints(controlNet.ResidualChannels);
                return json;
            }),
            new(UNet, s => UNet2DConditionModel.Build(config.UNet, s, options.Export with { ControlNetResiduals = true }), () => UNetJson(config)),
        ];
        return WriteStaged(folder, root =>
        {
            var written = new List<WrittenComponent>();
            foreach (var component in components)
            {
                string dir = Path.Combine(root, component.Name);
                Directory.CreateDirectory(dir);
                written.Add(WriteComponent(component, dir, seed, options));
                WriteJson(Path.Combine(dir, "config.json"), component.Config());
            }
            WriteJson(Path.Combine(root, "model_index.json"), new JsonObject
            {
                ["_class_name"] = "ControlNetModel",
                ["_edgediffusion"] = new JsonObject { ["base_model"] = config.Name, ["weights"] = "random", ["seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            });
            return written;
        });
    }

    /// <summary>Runs <paramref name="writeInto"/> on a staging folder and moves its files into <paramref name="folder"/> only when it completes.</summary>
    internal static IReadOnlyList<WrittenComponent> WriteStaged(string folder, Func<string, List<WrittenComponent>> writeInto)
    {
        string root = Path.GetFullPath(folder);
        // Everything is written into a staging folder beside the target and moved in only when complete, so a failure
        // or an interruption never leaves a half-written model folder (an existing one is left as it was).
        string staging = root.TrimEnd(Path.DirectorySeparatorChar) + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            var written = writeInto(staging);
            foreach (var file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
            {
                string target = Path.Combine(root, Path.GetRelativePath(staging, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Move(file, target, overwrite: true);
            }
            return written;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    private static List<WrittenComponent> WriteInto(StableDiffusionConfig config, string root, ulong seed, FolderWriteOptions options)
    {
        Directory.CreateDirectory(root);
        WriteTokenizer(config.TextEncoder, config.PadToken, Path.Combine(root, "tokenizer"), options.TokenizerSource);

        var written = new List<WrittenComponent>();
        foreach (var component in Components(config, options.Export))
        {
            string dir = Path.Combine(root, component.Name);
            Directory.CreateDirectory(dir);
            written.Add(WriteComponent(component, dir, seed, options));
            WriteJson(Path.Combine(dir, "config.json"), component.Config());
        }
        WriteJson(Path.Combine(root, "scheduler", "scheduler_config.json"), SchedulerConfig(config.Scheduler));
        WriteJson(Path.Combine(root, "model_index.json"), ModelIndex(config, seed));
        return written;
    }

    internal sealed record Component(string Name, Func<ParameterSink, ModelProto> Build, Func<JsonObject> Config);

    internal static IEnumerable<Component> Components(StableDiffusionConfig c, ExportOptions export) =>
    [
        new(TextEncoder, s => ClipTextModel.Build(c.TextEncoder, s, export), () => TextEncoderJson(c.TextEncoder)),
        new(UNet, s => UNet2DConditionModel.Build(c.UNet, s, export), () => UNetJson(c)),
        new(VaeDecoder, s => AutoencoderKL.BuildDecoder(c.Vae, s, export), () => VaeJson(c)),
        new(VaeEncoder, s => AutoencoderKL.BuildEncoder(c.Vae, s, export), () => VaeJson(c)),
    ];

    internal static WrittenComponent WriteComponent(Component component, string dir, ulong seed, FolderWriteOptions options)
    {
        var clock = Stopwatch.StartNew();
        string modelPath = Path.Combine(dir, "model.onnx");
        // Each component draws from its own stream: the same parameter name in two components gets different values.
        ulong componentSeed = ParameterSink.SeedFor(seed, component.Name);

        var shapes = new ShapeOnlyParameters();
        component.Build(shapes);
        long bytes = shapes.Declared.Sum(p => p.Bytes);
        bool external = bytes > options.ExternalDataAboveBytes;
        string dataPath = modelPath + "_data";
        if (external)
        {
            using var sink = new StreamedRandomParameters(componentSeed, modelPath, OnnxSaveOptions.External());
            var model = component.Build(sink);
            sink.Commit();
            ModelFiles.WriteProto(model, modelPath);
        }
        else
        {
            var model = component.Build(new RandomParameters(componentSeed));
            OnnxModel.FromProto(model, dir).Save(modelPath, OnnxSaveOptions.Inline);
            if (File.Exists(dataPath)) File.Delete(dataPath); // left by an earlier, external write
        }
        long fileBytes = new FileInfo(modelPath).Length + (external ? new FileInfo(dataPath).Length : 0);
        options.Progress?.Invoke($"{component.Name}: {shapes.Count:N0} parameters, {fileBytes / 1048576.0:F1} MiB{(external ? " (external data)" : "")} in {clock.Elapsed.TotalSeconds:F1} s");
        return new WrittenComponent(component.Name, shapes.Count, fileBytes, external);
    }

    // ---------------------------------------------------------------- tokenizer

    /// <summary>Writes tokenizer/ for a text encoder: the tiny tokenizer, or a copy of <paramref name="source"/>'s vocabulary, and the configs naming the pad token.</summary>
    internal static void WriteTokenizer(ClipTextConfig textEncoder, string padToken, string dir, string? source)
    {
        Directory.CreateDirectory(dir);
        if (source is null) TinyClipTokenizer.WriteVocabAndMerges(dir);
        else CopyTokenizer(textEncoder, padToken, source, dir);

        var special = new JsonObject
        {
            ["bos_token"] = StableDiffusionConfig.StartOfText,
            ["eos_token"] = StableDiffusionConfig.EndOfText,
            ["pad_token"] = padToken,
            ["unk_token"] = StableDiffusionConfig.EndOfText,
        };
        WriteJson(Path.Combine(dir, "special_tokens_map.json"), special);
        var tokenizerConfig = new JsonObject
        {
            ["add_prefix_space"] = false,
            ["bos_token"] = StableDiffusionConfig.StartOfText,
            ["do_lower_case"] = true,
            ["eos_token"] = StableDiffusionConfig.EndOfText,
            ["errors"] = "replace",
            ["model_max_length"] = textEncoder.MaxPositions,
            ["pad_token"] = padToken,
            ["tokenizer_class"] = "CLIPTokenizer",
            ["unk_token"] = StableDiffusionConfig.EndOfText,
        };
        WriteJson(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig);
    }

    /// <summary>Copies vocab.json and merges.txt, checking that every id fits the text encoder's vocabulary.</summary>
    private static void CopyTokenizer(ClipTextConfig textEncoder, string padToken, string source, string dir)
    {
        string vocab = Path.Combine(source, "vocab.json");
        string merges = Path.Combine(source, "merges.txt");
        if (!File.Exists(vocab) || !File.Exists(merges))
            throw new InvalidArgumentException("tokenizer source", $"{source} must hold vocab.json and merges.txt (a CLIP tokenizer folder)");
        JsonObject? table;
        try { table = JsonNode.Parse(File.ReadAllText(vocab)) as JsonObject; }
        catch (System.Text.Json.JsonException e) { throw new InvalidArgumentException("tokenizer source", $"{vocab} is not valid JSON ({e.Message})"); }
        if (table is null) throw new InvalidArgumentException("tokenizer source", $"{vocab} is not a JSON object of token → id");
        long maxId = table.Max(kv => kv.Value?.GetValue<long>() ?? -1);
        if (maxId >= textEncoder.VocabSize)
            throw new InvalidArgumentException("tokenizer source", $"{vocab} has ids up to {maxId}, beyond the text encoder's {textEncoder.VocabSize} embeddings");
        if (!table.ContainsKey(padToken))
            throw new InvalidArgumentException("tokenizer source", $"{vocab} lacks the pad token '{padToken}'");
        if (Path.GetFullPath(source) == Path.GetFullPath(dir)) return;
        File.Copy(vocab, Path.Combine(dir, "vocab.json"), overwrite: true);
        File.Copy(merges, Path.Combine(dir, "merges.txt"), overwrite: true);
    }

    // ---------------------------------------------------------------- JSON files

    internal static void WriteJson(string path, JsonObject json)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, json.ToJsonString(Indented) + "\n");
    }

    private static readonly System.Text.Json.JsonSerializerOptions Indented =
        new(TinyClipTokenizer.Json) { WriteIndented = true };

    internal static JsonArray Ints(IEnumerable<int> values) => [.. values.Select(v => (JsonNode?)v)];

    internal static JsonArray Strings(IEnumerable<string> values) => [.. values.Select(v => (JsonNode?)v)];

    internal static JsonObject ModelIndex(StableDiffusionConfig c, ulong seed) => new()
    {
        ["_class_name"] = "OnnxStableDiffusionPipeline",
        ["_edgediffusion"] = new JsonObject
        {
            ["architecture"] = c.Name,
            ["weights"] = "random",
            ["seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
        },
        ["feature_extractor"] = new JsonArray(null, null),
        ["requires_safety_checker"] = false,
        ["safety_checker"] = new JsonArray(null, null),
        ["scheduler"] = new JsonArray("diffusers", SchedulerClass(c.Scheduler)),
        ["text_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["vae_decoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        ["vae_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
    };

    internal static string SchedulerClass(SchedulerKind kind) => kind switch
    {
        SchedulerKind.Pndm => "PNDMScheduler",
        SchedulerKind.DdimVPrediction => "DDIMScheduler",
        _ => "EulerDiscreteScheduler",
    };

    /// <summary>The scheduler_config.json diffusers ships for each model (SD 1.5: PNDM; SD 2.1: DDIM v-prediction; SD-Turbo: Euler, trailing).</summary>
    internal static JsonObject SchedulerConfig(SchedulerKind kind)
    {
        var json = new JsonObject
        {
            ["_class_name"] = SchedulerClass(kind),
            ["beta_end"] = 0.012,
            ["beta_schedule"] = "scaled_linear",
            ["beta_start"] = 0.00085,
            ["clip_sample"] = false,
            ["num_train_timesteps"] = 1000,
            ["prediction_type"] = kind == SchedulerKind.DdimVPrediction ? "v_prediction" : "epsilon",
            ["set_alpha_to_one"] = false,
            ["skip_prk_steps"] = true,
            ["steps_offset"] = 1,
            ["timestep_spacing"] = kind == SchedulerKind.EulerTrailing ? "trailing" : "leading",
            ["trained_betas"] = null,
        };
        if (kind == SchedulerKind.EulerTrailing)
        {
            json["interpolation_type"] = "linear";
            json["use_karras_sigmas"] = false;
        }
        return json;
    }

    internal static JsonObject TextEncoderJson(ClipTextConfig t)
    {
        var json = TextModelJson(t);
        if (t.ProjectionDim > 0)
        {
            json["architectures"] = new JsonArray("CLIPTextModelWithProjection");
            json["projection_dim"] = t.ProjectionDim;
        }
        return json;
    }

    private static JsonObject TextModelJson(ClipTextConfig t) => new()
    {
        ["architectures"] = new JsonArray("CLIPTextModel"),
        ["model_type"] = "clip_text_model",
        ["vocab_size"] = t.VocabSize,
        ["hidden_size"] = t.Width,
        ["intermediate_size"] = t.MlpWidth,
        ["num_hidden_layers"] = t.Layers,
        ["num_attention_heads"] = t.Heads,
        ["max_position_embeddings"] = t.MaxPositions,
        ["hidden_act"] = t.Activation == ClipActivation.QuickGelu ? "quick_gelu" : "gelu",
        ["layer_norm_eps"] = t.LayerNormEps,
        ["torch_dtype"] = "float32",
    };

    internal static JsonObject UNetJson(StableDiffusionConfig c)
    {
        var u = c.UNet;
        return new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["attention_head_dim"] = Ints(u.Heads), // diffusers' name for the head counts of these models
            ["block_out_channels"] = Ints(u.BlockOutChannels),
            ["cross_attention_dim"] = u.CrossAttentionDim,
            ["down_block_types"] = Strings(u.CrossAttention.Select(x => x ? "CrossAttnDownBlock2D" : "DownBlock2D")),
            ["flip_sin_to_cos"] = true,
            ["freq_shift"] = 0,
            ["in_channels"] = u.InChannels,
            ["layers_per_block"] = u.LayersPerBlock,
            ["norm_eps"] = u.NormEps,
            ["norm_num_groups"] = u.NormGroups,
            ["out_channels"] = u.OutChannels,
            ["sample_size"] = c.LatentSize,
            ["up_block_types"] = Strings(u.CrossAttention.Reverse().Select(x => x ? "CrossAttnUpBlock2D" : "UpBlock2D")),
            ["use_linear_projection"] = u.UseLinearProjection,
        };
    }

    internal static JsonObject VaeJson(StableDiffusionConfig c) => new()
    {
        ["_class_name"] = "AutoencoderKL",
        ["block_out_channels"] = Ints(c.Vae.BlockOutChannels),
        ["in_channels"] = c.Vae.ImageChannels,
        ["latent_channels"] = c.Vae.LatentChannels,
        ["layers_per_block"] = c.Vae.LayersPerBlock,
        ["norm_num_groups"] = c.Vae.NormGroups,
        ["out_channels"] = c.Vae.ImageChannels,
        ["sample_size"] = c.ImageSize,
        ["scaling_factor"] = c.Vae.ScalingFactor,
    };
}
