using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Conversion;

/// <summary>
/// Reads the config.json diffusers and transformers write beside each component into the project's architecture records.
/// Every value is read from the file (nothing is guessed from a list of known models); a value the builders do not
/// implement is a <see cref="ConversionException"/> of kind <see cref="ConversionProblem.UnsupportedConfig"/> naming the key.
/// </summary>
public static class DiffusersConfigs
{
    /// <summary>UNet2DConditionModel's config.json → the UNet record and its sample_size (the latent side).</summary>
    public static (UNetConfig UNet, int SampleSize) ReadUNet(string path)
    {
        var j = new Reader(path);
        j.Class("UNet2DConditionModel");
        var config = ReadDownHalf(j, j.Int("out_channels", 4));
        var expectedUp = config.CrossAttention.Reverse().Select(x => x ? "CrossAttnUpBlock2D" : "UpBlock2D").ToList();
        var up = j.Strings("up_block_types");
        if (!up.SequenceEqual(expectedUp))
            throw j.Unsupported("up_block_types", $"is [{string.Join(", ", up)}]; supported: the mirror of down_block_types, [{string.Join(", ", expectedUp)}]");
        j.Expect("conv_out_kernel", 3);
        j.Expect("resnet_out_scale_factor", 1);
        j.Expect("class_embeddings_concat", false);
        foreach (var key in new[] { "time_cond_proj_dim", "timestep_post_act", "time_embedding_dim", "time_embedding_act_fn",
                     "cross_attention_norm", "reverse_transformer_layers_per_block" })
            j.Expect(key, null);
        return (config, j.Int("sample_size"));
    }

    /// <summary>ControlNetModel's config.json → the ControlNet record (the down half of its UNet and the conditioning embedding).</summary>
    public static ControlNetConfig ReadControlNet(string path)
    {
        var j = new Reader(path);
        j.Class("ControlNetModel");
        var unet = ReadDownHalf(j, outChannels: 4);
        j.Expect("controlnet_conditioning_channel_order", "rgb");
        j.Expect("global_pool_conditions", false);
        var config = new ControlNetConfig(unet,
            j.Has("conditioning_embedding_out_channels") ? j.Ints("conditioning_embedding_out_channels") : ControlNetConfig.DefaultConditioningEmbeddingChannels,
            j.Int("conditioning_channels", 3));
        j.Try(config.Validate, "conditioning_embedding_out_channels");
        return config;
    }

    /// <summary>
    /// What UNet2DConditionModel and ControlNetModel configs share: the levels, their block types, heads, widths and norms of
    /// the time embedding, conv_in, down blocks and mid block; every key that would change that computation and is not
    /// implemented is refused.
    /// </summary>
    private static UNetConfig ReadDownHalf(Reader j, int outChannels)
    {
        var blocks = j.Ints("block_out_channels");
        int n = blocks.Count;
        var down = j.Strings("down_block_types");
        if (down.Count != n) throw j.Unsupported("down_block_types", $"has {down.Count} entries but block_out_channels has {n}");
        var cross = new bool[n];
        for (int i = 0; i < n; i++)
            cross[i] = down[i] switch
            {
                "CrossAttnDownBlock2D" => true,
                "DownBlock2D" => false,
                _ => throw j.Unsupported("down_block_types", $"entry {i} is '{down[i]}'; supported: CrossAttnDownBlock2D, DownBlock2D"),
            };
        j.Expect("mid_block_type", "UNetMidBlock2DCrossAttn");

        // diffusers: num_attention_heads = num_attention_heads or attention_head_dim, and it refuses a set num_attention_heads
        // for this model; so attention_head_dim is the head count per level in SD configs
        var heads = j.IntOrInts("attention_head_dim", n);
        int crossDim = j.Int("cross_attention_dim");
        var config = new UNetConfig(blocks, j.Int("layers_per_block"), heads, crossDim, j.Bool("use_linear_projection", false), cross,
            j.Int("norm_num_groups", 32), j.Float("norm_eps", 1e-5f), j.Int("in_channels", 4), outChannels);

        j.Expect("flip_sin_to_cos", true);
        j.Expect("freq_shift", 0);
        j.Expect("act_fn", "silu");
        j.Expect("center_input_sample", false);
        j.Expect("downsample_padding", 1);
        j.Expect("mid_block_scale_factor", 1);
        j.Expect("transformer_layers_per_block", 1);
        j.Expect("resnet_time_scale_shift", "default");
        j.Expect("time_embedding_type", "positional");
        j.Expect("only_cross_attention", false);
        j.Expect("dual_cross_attention", false);
        j.Expect("conv_in_kernel", 3);
        j.Expect("attention_type", "default");
        j.Expect("resnet_skip_time_act", false);
        foreach (var key in new[] { "class_embed_type", "addition_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
                     "projection_class_embeddings_input_dim", "addition_time_embed_dim", "num_attention_heads" })
            j.Expect(key, null);
        // upcast_attention only changes the precision of half-precision attention scores: nothing to do in float32
        j.Try(config.Validate, "block_out_channels");
        return config;
    }

    /// <summary>AutoencoderKL's config.json → the VAE record.</summary>
    public static VaeConfig ReadVae(string path)
    {
        var j = new Reader(path);
        j.Class("AutoencoderKL");
        var blocks = j.Ints("block_out_channels");
        foreach (var (key, type) in new[] { ("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D") })
        {
            var types = j.Strings(key, [.. Enumerable.Repeat(type, blocks.Count)]);
            if (types.Count != blocks.Count || types.Any(t => t != type))
                throw j.Unsupported(key, $"is [{string.Join(", ", types)}]; supported: {type} at each of the {blocks.Count} levels");
        }
        int inChannels = j.Int("in_channels", 3), outChannels = j.Int("out_channels", 3);
        if (inChannels != outChannels) throw j.Unsupported("out_channels", $"is {outChannels} but in_channels is {inChannels}; supported: equal");
        j.Expect("act_fn", "silu");
        j.Expect("use_quant_conv", true);
        j.Expect("use_post_quant_conv", true);
        j.Expect("mid_block_add_attention", true);
        j.Expect("shift_factor", null);
        j.Expect("latents_mean", null);
        j.Expect("latents_std", null);
        var config = new VaeConfig(blocks, j.Int("layers_per_block"), j.Int("norm_num_groups", 32), j.Int("latent_channels", 4), inChannels,
            j.Float("scaling_factor", 0.18215f));
        j.Try(config.Validate, "block_out_channels");
        return config;
    }

    /// <summary>CLIPTextModel's or CLIPTextModelWithProjection's config.json → the text encoder record (CLIPTextModel's projection_dim is not used: it has no projection).</summary>
    public static ClipTextConfig ReadTextEncoder(string path)
    {
        var j = new Reader(path);
        var architectures = j.Strings("architectures", ["CLIPTextModel"]);
        if (architectures.Count != 1 || architectures[0] is not ("CLIPTextModel" or "CLIPTextModelWithProjection"))
            throw j.Unsupported("architectures", $"is [{string.Join(", ", architectures)}]; supported: [CLIPTextModel] (what Stable Diffusion 1.x/2.x ship) or [CLIPTextModelWithProjection] (Stable Cascade's)");
        // the projection is a bias-free Linear of the pooled output; CLIPTextModel's projection_dim belongs to the CLIP pair and has no weights
        int projection = architectures[0] == "CLIPTextModelWithProjection" ? j.Int("projection_dim") : 0;
        j.Expect("model_type", "clip_text_model");
        string act = j.String("hidden_act", "quick_gelu");
        var activation = act switch
        {
            "quick_gelu" => ClipActivation.QuickGelu,
            "gelu" => ClipActivation.Gelu,
            _ => throw j.Unsupported("hidden_act", $"is '{act}'; supported: quick_gelu, gelu"),
        };
        var config = new ClipTextConfig(j.Int("vocab_size"), j.Int("hidden_size"), j.Int("num_hidden_layers"), j.Int("num_attention_heads"),
            j.Int("intermediate_size"), j.Int("max_position_embeddings"), activation, j.Float("layer_norm_eps", 1e-5f), projection);
        j.Try(config.Validate, "hidden_size");
        return config;
    }

    /// <summary>StableCascadeUNet's config.json (Stage C prior or Stage B decoder) → the Cascade UNet record and its sample_size.</summary>
    public static StableCascadeUNetConfig ReadStableCascadeUNet(string path)
    {
        var j = new Reader(path);
        j.Class("StableCascadeUNet");
        var blocks = j.Ints("block_out_channels");
        int n = blocks.Count;
        var types = j.StringLists("block_types_per_layer").Select((level, i) => (IReadOnlyList<CascadeBlock>)[.. level.Select(t => t switch
        {
            "SDCascadeResBlock" => CascadeBlock.ResBlock,
            "SDCascadeTimestepBlock" => CascadeBlock.TimestepBlock,
            "SDCascadeAttnBlock" => CascadeBlock.AttnBlock,
            _ => throw j.Unsupported("block_types_per_layer", $"level {i} has '{t}'; supported: SDCascadeResBlock, SDCascadeTimestepBlock, SDCascadeAttnBlock"),
        })]).ToList();
        int? Optional(string key) => j.Has(key) ? j.Int(key) : null;
        var switchLevel = j.Has("switch_level") ? j.Bools("switch_level") : null;
        var config = new StableCascadeUNetConfig(
            InChannels: j.Int("in_channels"), OutChannels: j.Int("out_channels"), PatchSize: j.Int("patch_size"), ConditioningDim: j.Int("conditioning_dim"),
            BlockOutChannels: blocks, Heads: j.IntOrInts("num_attention_heads", n), DownLayers: j.IntOrInts("down_num_layers_per_block", n),
            UpLayers: j.IntOrInts("up_num_layers_per_block", n),
            DownRepeatMappers: j.Has("down_blocks_repeat_mappers") ? j.IntOrInts("down_blocks_repeat_mappers", n) : [.. Enumerable.Repeat(1, n)],
            UpRepeatMappers: j.Has("up_blocks_repeat_mappers") ? j.IntOrInts("up_blocks_repeat_mappers", n) : [.. Enumerable.Repeat(1, n)],
            BlockTypes: types, ClipTextPooledChannels: j.Int("clip_text_pooled_in_channels"),
            ClipTextChannels: Optional("clip_text_in_channels"), ClipImageChannels: Optional("clip_image_in_channels"), ClipSeq: j.Int("clip_seq", 4),
            EffnetChannels: Optional("effnet_in_channels"), PixelMapperChannels: Optional("pixel_mapper_in_channels"),
            TimestepConditioning: j.Strings("timestep_conditioning_type", ["sca", "crp"]), SwitchLevel: switchLevel,
            TimestepEmbeddingDim: j.Int("timestep_ratio_embedding_dim", 64), KernelSize: j.Int("kernel_size", 3), SelfAttention: j.Bool("self_attn", true));
        if (types.Count != n) throw j.Unsupported("block_types_per_layer", $"has {types.Count} levels but block_out_channels has {n}");
        // dropout is identity at inference; effnet / pixel mappers and sca / crp are what the builder implements
        j.Try(config.Validate, "block_out_channels");
        return config;
    }

    /// <summary>PaellaVQModel's config.json (Stable Cascade's Stage A) → the VQGAN record.</summary>
    public static PaellaVQConfig ReadPaellaVQ(string path)
    {
        var j = new Reader(path);
        j.Class("PaellaVQModel");
        int inChannels = j.Int("in_channels", 3), outChannels = j.Int("out_channels", 3);
        if (inChannels != outChannels) throw j.Unsupported("out_channels", $"is {outChannels} but in_channels is {inChannels}; supported: equal");
        var config = new PaellaVQConfig(j.Int("levels", 2), j.Int("bottleneck_blocks", 12), j.Int("embed_dim", 384), j.Int("latent_channels", 4),
            j.Int("num_vq_embeddings", 8192), j.Int("up_down_scale_factor", 2), inChannels, j.Float("scale_factor", 0.3764f));
        j.Try(config.Validate, "embed_dim");
        return config;
    }

    /// <summary>JSON access with one-line errors naming the file and key.</summary>
    private sealed class Reader
    {
        private readonly string _path;
        private readonly JsonObject _json;

        public Reader(string path)
        {
            _path = path;
            if (!System.IO.File.Exists(path))
                throw new ConversionException(ConversionProblem.MissingComponent, path, "not found; every diffusers component folder holds a config.json");
            try
            {
                _json = JsonNode.Parse(System.IO.File.ReadAllText(path)) as JsonObject
                    ?? throw new ConversionException(ConversionProblem.UnsupportedConfig, path, "is not a JSON object");
            }
            catch (JsonException e)
            {
                throw new ConversionException(ConversionProblem.UnsupportedConfig, path, $"is not valid JSON ({e.Message})");
            }
        }

        public ConversionException Unsupported(string key, string problem) =>
            new(ConversionProblem.UnsupportedConfig, _path, $"{key} {problem}", [key]);

        public void Class(string name)
        {
            if (_json["_class_name"] is JsonNode v && v.ToString() != name)
                throw Unsupported("_class_name", $"is '{v}'; expected {name}");
        }

        /// <summary>A key that, when present and not null, must hold <paramref name="supported"/> (null: must be absent or null).</summary>
        public void Expect(string key, JsonNode? supported)
        {
            var v = _json[key];
            if (v is null) return;
            bool ok = supported is null ? false
                : v.GetValueKind() == JsonValueKind.Number && supported.GetValueKind() == JsonValueKind.Number
                    ? Number(v) == Number(supported)
                    : JsonNode.DeepEquals(v, supported);
            if (!ok) throw Unsupported(key, $"is {v.ToJsonString()}; supported: {(supported is null ? "null (absent)" : supported.ToJsonString())}");
        }

        private static double Number(JsonNode n) => double.Parse(n.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture);

        public bool Has(string key) => _json[key] is not null;

        private JsonNode Required(string key) => _json[key] ?? throw Unsupported(key, "is missing; the converter reads it rather than guessing");

        public int Int(string key, int? fallback = null)
        {
            var v = _json[key];
            if (v is null) return fallback ?? throw Unsupported(key, "is missing; the converter reads it rather than guessing");
            return AsInt(key, v);
        }

        private int AsInt(string key, JsonNode v) =>
            v.GetValueKind() == JsonValueKind.Number && Number(v) is var d && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue
                ? (int)d
                : throw Unsupported(key, $"is {v.ToJsonString()}; supported: a whole number");

        public float Float(string key, float fallback)
        {
            var v = _json[key];
            if (v is null) return fallback;
            return v.GetValueKind() == JsonValueKind.Number ? (float)Number(v) : throw Unsupported(key, $"is {v.ToJsonString()}; supported: a number");
        }

        public bool Bool(string key, bool fallback)
        {
            var v = _json[key];
            if (v is null) return fallback;
            return v is JsonValue value && value.TryGetValue(out bool b) ? b : throw Unsupported(key, $"is {v.ToJsonString()}; supported: true or false");
        }

        public string String(string key, string fallback)
        {
            var v = _json[key];
            if (v is null) return fallback;
            return v is JsonValue value && value.TryGetValue(out string? s) ? s : throw Unsupported(key, $"is {v.ToJsonString()}; supported: a string");
        }

        public IReadOnlyList<int> Ints(string key)
        {
            var v = Required(key);
            if (v is not JsonArray a || a.Count == 0) throw Unsupported(key, $"is {v.ToJsonString()}; supported: a non-empty list of whole numbers");
            return [.. a.Select(x => x is null ? throw Unsupported(key, "holds null") : AsInt(key, x))];
        }

        /// <summary>A number for every level, or a list of one per level.</summary>
        public IReadOnlyList<int> IntOrInts(string key, int levels)
        {
            var v = Required(key);
            if (v is JsonArray a)
            {
                if (a.Count != levels) throw Unsupported(key, $"has {a.Count} entries but there are {levels} levels");
                return [.. a.Select(x => x is null ? throw Unsupported(key, "holds null") : AsInt(key, x))];
            }
            int one = AsInt(key, v);
            return [.. Enumerable.Repeat(one, levels)];
        }

        public IReadOnlyList<string> Strings(string key, IReadOnlyList<string>? fallback = null)
        {
            var v = _json[key];
            if (v is null) return fallback ?? throw Unsupported(key, "is missing; the converter reads it rather than guessing");
            if (v is not JsonArray a) throw Unsupported(key, $"is {v.ToJsonString()}; supported: a list of strings");
            return [.. a.Select(x => x is JsonValue s && s.TryGetValue(out string? t) ? t : throw Unsupported(key, $"holds {x?.ToJsonString() ?? "null"}; supported: strings"))];
        }

        public IReadOnlyList<bool> Bools(string key)
        {
            var v = Required(key);
            if (v is not JsonArray a) throw Unsupported(key, $"is {v.ToJsonString()}; supported: a list of true/false");
            return [.. a.Select(x => x is JsonValue b && b.TryGetValue(out bool f) ? f : throw Unsupported(key, $"holds {x?.ToJsonString() ?? "null"}; supported: true or false"))];
        }

        /// <summary>A list of lists of strings (block_types_per_layer).</summary>
        public IReadOnlyList<IReadOnlyList<string>> StringLists(string key)
        {
            var v = Required(key);
            if (v is not JsonArray a) throw Unsupported(key, $"is {v.ToJsonString()}; supported: a list of lists of strings");
            return [.. a.Select(x => x is JsonArray inner
                ? (IReadOnlyList<string>)[.. inner.Select(s => s is JsonValue t && t.TryGetValue(out string? u) ? u : throw Unsupported(key, $"holds {s?.ToJsonString() ?? "null"}; supported: strings"))]
                : throw Unsupported(key, $"holds {x?.ToJsonString() ?? "null"}; supported: lists of strings"))];
        }

        /// <summary>Runs a record's own validation, reporting its problem against this file.</summary>
        public void Try(Action validate, string key)
        {
            try { validate(); }
            catch (InvalidArgumentException e) { throw Unsupported(key, $"describes sizes the builders cannot make ({e.Message})"); }
        }
    }
}
