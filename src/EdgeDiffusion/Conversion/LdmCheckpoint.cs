using System.Text.RegularExpressions;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Conversion;

/// <summary>Which original Stable Diffusion release a single-file checkpoint's text encoder says it is.</summary>
public enum LdmFamily
{
    /// <summary>SD 1.x: OpenAI CLIP ViT-L/14 under <c>cond_stage_model.transformer.</c> (transformers' own names).</summary>
    Sd1,

    /// <summary>SD 2.x: OpenCLIP ViT-H/14 under <c>cond_stage_model.model.</c> (fused q/k/v, penultimate layer's output).</summary>
    Sd2,
}

/// <summary>
/// The original (CompVis / Stability "LDM") single-file layout of a Stable Diffusion checkpoint: the UNet under
/// <c>model.diffusion_model.</c> (openaimodel.py's input_blocks / middle_block / output_blocks of TimestepEmbedSequential
/// modules), the VAE under <c>first_stage_model.</c> (encoder.down[i].block[j], mid.block_1/attn_1/block_2, decoder.up
/// numbered from the lowest resolution), the text encoder under <c>cond_stage_model.</c>. <see cref="Locate"/> gives, for
/// each name the builders declare (diffusers / transformers names), where it lies in this layout; the positions are
/// computed from the architecture's levels and layers, the way openaimodel.py numbers its modules.
/// </summary>
public sealed class LdmCheckpoint
{
    public const string UNetPrefix = "model.diffusion_model.";
    public const string VaePrefix = "first_stage_model.";
    public const string Sd1TextPrefix = "cond_stage_model.transformer.";
    public const string Sd2TextPrefix = "cond_stage_model.model.";

    /// <summary>The diffusion process's schedule buffers LDM saves beside the weights (the scheduler config recomputes them).</summary>
    public static readonly IReadOnlyList<string> ScheduleBuffers =
    [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
        "posterior_mean_coef1", "posterior_mean_coef2", "logvar",
    ];

    private readonly HashSet<string> _names;
    private readonly Dictionary<string, (string To, Kind Kind)> _modules = new(StringComparer.Ordinal);
    private readonly string _sd1Text;

    private enum Kind { Same, UNetResnet, VaeResnet, VaeAttention, OpenClipLayer }

    private LdmCheckpoint(IEnumerable<string> names, LdmFamily family, StableDiffusionConfig config)
    {
        _names = [.. names];
        Family = family;
        // transformers before 4.x saved CLIPTextModel without the text_model. level
        _sd1Text = _names.Any(n => n.StartsWith(Sd1TextPrefix + "text_model.", StringComparison.Ordinal)) ? Sd1TextPrefix + "text_model." : Sd1TextPrefix;
        AddUNet(config.UNet);
        AddVae(config.Vae);
        if (family == LdmFamily.Sd2) AddOpenClip(config.TextEncoder);
        Ignored = [.. _names.Where(IsKnownNonWeight(config.TextEncoder))];
    }

    public LdmFamily Family { get; }

    /// <summary>"SD 1.x" / "SD 2.x", for messages.</summary>
    public static string Describe(LdmFamily family) => family == LdmFamily.Sd1 ? "SD 1.x" : "SD 2.x";

    /// <summary>The checkpoint's tensors that are known not to be weights of the converted graphs (see <see cref="IsKnownNonWeight"/>).</summary>
    public IReadOnlyList<string> Ignored { get; }

    /// <summary>Whether the names are an LDM single-file Stable Diffusion checkpoint (its UNet prefix is there).</summary>
    public static bool IsLdm(IEnumerable<string> names) => names.Any(n => n.StartsWith(UNetPrefix, StringComparison.Ordinal));

    /// <summary>The family the text encoder's keys say, or a one-line error naming what was found instead.</summary>
    public static LdmFamily FamilyOf(IReadOnlyCollection<string> names, string file)
    {
        if (names.Any(n => n.StartsWith(Sd2TextPrefix, StringComparison.Ordinal))) return LdmFamily.Sd2;
        if (names.Any(n => n.StartsWith(Sd1TextPrefix, StringComparison.Ordinal))) return LdmFamily.Sd1;
        string hint = names.Any(n => n.StartsWith("conditioner.embedders.", StringComparison.Ordinal))
            ? "it has conditioner.embedders.* (an SDXL checkpoint), which is not converted"
            : names.Any(n => n.StartsWith("down_blocks.", StringComparison.Ordinal) || n.StartsWith("encoder.down_blocks.", StringComparison.Ordinal) || n.StartsWith("text_model.", StringComparison.Ordinal))
                ? "its keys are one diffusers/transformers component's (down_blocks.*, text_model.*); pass the diffusers folder that holds it"
            : !IsLdm(names) ? $"it has no {UNetPrefix}* UNet either; the first keys are {ConversionException.List([.. names.Take(3)], 3)}"
            : $"it has neither {Sd1TextPrefix}* (SD 1.x) nor {Sd2TextPrefix}* (SD 2.x) text encoder keys";
        throw new ConversionException(ConversionProblem.UnknownArchitecture, file,
            $"is not a Stable Diffusion 1.x/2.x single-file checkpoint ({hint}); convert a diffusers folder, or pass one of those checkpoints");
    }

    /// <summary>The layout of a checkpoint with these names, for the architecture <paramref name="config"/>.</summary>
    public static LdmCheckpoint For(IEnumerable<string> names, LdmFamily family, StableDiffusionConfig config) => new(names, family, config);

    /// <summary>
    /// Tensors LDM checkpoints carry that no converted graph uses, each for a stated reason: the EMA copy of the UNet
    /// (<c>model_ema.*</c>; the saved <c>model.diffusion_model.*</c> are what inference uses), the schedule buffers
    /// (<see cref="ScheduleBuffers"/>), CLIP's <c>position_ids</c> buffer, and SD 2.x's OpenCLIP parts CLIPTextModel has no
    /// place for: <c>text_projection</c> and <c>logit_scale</c> (contrastive-training heads) and the last resblock (SD 2.x
    /// takes the penultimate layer's output).
    /// </summary>
    public static Func<string, bool> IsKnownNonWeight(ClipTextConfig text) => name =>
        name.StartsWith("model_ema.", StringComparison.Ordinal)
        || ScheduleBuffers.Contains(name)
        || name == Sd1TextPrefix + "text_model.embeddings.position_ids"
        || name == Sd1TextPrefix + "embeddings.position_ids"
        || name == Sd2TextPrefix + "text_projection"
        || name == Sd2TextPrefix + "logit_scale"
        || name.StartsWith($"{Sd2TextPrefix}transformer.resblocks.{text.Layers}.", StringComparison.Ordinal);

    /// <summary>Where the declared (diffusers / transformers) name lies in this checkpoint; null when the layout has no place for it.</summary>
    public TensorLocation? Locate(string name)
    {
        if (name.StartsWith("text_model.", StringComparison.Ordinal) && Family == LdmFamily.Sd1)
            return new TensorLocation(_sd1Text + name["text_model.".Length..]);
        // OpenCLIP's positional_embedding is a bare parameter, not a module's weight
        if (name == "text_model.embeddings.position_embedding.weight" && Family == LdmFamily.Sd2)
            return new TensorLocation(Sd2TextPrefix + "positional_embedding");
        // the longest module prefix known wins (a module path ends at a dot)
        for (int dot = name.LastIndexOf('.'); dot > 0; dot = name.LastIndexOf('.', dot - 1))
        {
            if (!_modules.TryGetValue(name[..(dot + 1)], out var module)) continue;
            return Inside(module.To, module.Kind, name[(dot + 1)..]);
        }
        return null;
    }

    private static TensorLocation Inside(string to, Kind kind, string rest)
    {
        switch (kind)
        {
            case Kind.UNetResnet:
                return new(to + Rename(rest, ("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
                    ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")));
            case Kind.VaeResnet:
                return new(to + Rename(rest, ("conv_shortcut.", "nin_shortcut.")));
            case Kind.VaeAttention:
                // LDM's AttnBlock: GroupNorm "norm" and 1×1 convs q, k, v, proj_out ([C, C, 1, 1] for diffusers' [C, C] Linears)
                return new(to + Rename(rest, ("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")));
            case Kind.OpenClipLayer:
                foreach (var (proj, part) in new[] { ("self_attn.q_proj.", 0), ("self_attn.k_proj.", 1), ("self_attn.v_proj.", 2) })
                    if (rest.StartsWith(proj, StringComparison.Ordinal))
                        return new(to + "attn.in_proj_" + rest[proj.Length..], part, 3); // nn.MultiheadAttention's fused rows: q, k, v
                return new(to + Rename(rest, ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("self_attn.out_proj.", "attn.out_proj."),
                    ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")));
            default:
                return new(to + rest);
        }
    }

    private static string Rename(string rest, params (string Diffusers, string Ldm)[] renames)
    {
        foreach (var (diffusers, ldm) in renames)
            if (rest.StartsWith(diffusers, StringComparison.Ordinal)) return ldm + rest[diffusers.Length..];
        return rest;
    }

    private void Module(string diffusers, string ldm, Kind kind = Kind.Same) => _modules[diffusers] = (ldm, kind);

    /// <summary>
    /// openaimodel.py's numbering: input_blocks[0] is conv_in; then per level, layers_per_block blocks of (ResBlock[,
    /// SpatialTransformer]) and, except at the last level, one Downsample (op); middle_block = ResBlock, SpatialTransformer,
    /// ResBlock; output_blocks: per up level, layers_per_block + 1 blocks of (ResBlock[, SpatialTransformer]) with the
    /// Upsample (conv) after them in the last block of every level but the last; out = GroupNorm, SiLU, conv.
    /// </summary>
    private void AddUNet(UNetConfig c)
    {
        const string p = UNetPrefix;
        int n = c.BlockOutChannels.Count, layers = c.LayersPerBlock;
        Module("time_embedding.linear_1.", p + "time_embed.0.");
        Module("time_embedding.linear_2.", p + "time_embed.2.");
        Module("conv_in.", p + "input_blocks.0.0.");
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < layers; j++)
            {
                int block = 1 + i * (layers + 1) + j;
                Module($"down_blocks.{i}.resnets.{j}.", $"{p}input_blocks.{block}.0.", Kind.UNetResnet);
                if (c.CrossAttention[i]) Module($"down_blocks.{i}.attentions.{j}.", $"{p}input_blocks.{block}.1.");
            }
            if (i < n - 1) Module($"down_blocks.{i}.downsamplers.0.conv.", $"{p}input_blocks.{(i + 1) * (layers + 1)}.0.op.");
        }
        Module("mid_block.resnets.0.", p + "middle_block.0.", Kind.UNetResnet);
        Module("mid_block.attentions.0.", p + "middle_block.1.");
        Module("mid_block.resnets.1.", p + "middle_block.2.", Kind.UNetResnet);
        for (int i = 0; i < n; i++)
        {
            bool cross = c.CrossAttention[n - 1 - i];
            for (int j = 0; j <= layers; j++)
            {
                int block = i * (layers + 1) + j;
                Module($"up_blocks.{i}.resnets.{j}.", $"{p}output_blocks.{block}.0.", Kind.UNetResnet);
                if (cross) Module($"up_blocks.{i}.attentions.{j}.", $"{p}output_blocks.{block}.1.");
            }
            if (i < n - 1) Module($"up_blocks.{i}.upsamplers.0.conv.", $"{p}output_blocks.{i * (layers + 1) + layers}.{(cross ? 2 : 1)}.conv.");
        }
        Module("conv_norm_out.", p + "out.0.");
        Module("conv_out.", p + "out.2.");
    }

    /// <summary>LDM's Encoder/Decoder: down[i].block[j] (+ downsample), mid.block_1 / attn_1 / block_2, norm_out; the decoder's up[i] counts from the lowest resolution, diffusers' up_blocks from the highest.</summary>
    private void AddVae(VaeConfig c)
    {
        const string p = VaePrefix;
        int n = c.BlockOutChannels.Count;
        foreach (var part in new[] { "encoder", "decoder" })
        {
            Module($"{part}.conv_in.", $"{p}{part}.conv_in.");
            Module($"{part}.mid_block.resnets.0.", $"{p}{part}.mid.block_1.", Kind.VaeResnet);
            Module($"{part}.mid_block.attentions.0.", $"{p}{part}.mid.attn_1.", Kind.VaeAttention);
            Module($"{part}.mid_block.resnets.1.", $"{p}{part}.mid.block_2.", Kind.VaeResnet);
            Module($"{part}.conv_norm_out.", $"{p}{part}.norm_out.");
            Module($"{part}.conv_out.", $"{p}{part}.conv_out.");
        }
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++) Module($"encoder.down_blocks.{i}.resnets.{j}.", $"{p}encoder.down.{i}.block.{j}.", Kind.VaeResnet);
            if (i < n - 1) Module($"encoder.down_blocks.{i}.downsamplers.0.conv.", $"{p}encoder.down.{i}.downsample.conv.");
            int up = n - 1 - i;
            for (int j = 0; j <= c.LayersPerBlock; j++) Module($"decoder.up_blocks.{i}.resnets.{j}.", $"{p}decoder.up.{up}.block.{j}.", Kind.VaeResnet);
            if (i < n - 1) Module($"decoder.up_blocks.{i}.upsamplers.0.conv.", $"{p}decoder.up.{up}.upsample.conv.");
        }
        Module("quant_conv.", p + "quant_conv.");
        Module("post_quant_conv.", p + "post_quant_conv.");
    }

    /// <summary>OpenCLIP's TextTransformer: token_embedding, transformer.resblocks[i], ln_final (positional_embedding: <see cref="Locate"/>).</summary>
    private void AddOpenClip(ClipTextConfig c)
    {
        const string p = Sd2TextPrefix;
        Module("text_model.embeddings.token_embedding.", p + "token_embedding.");
        for (int i = 0; i < c.Layers; i++) Module($"text_model.encoder.layers.{i}.", $"{p}transformer.resblocks.{i}.", Kind.OpenClipLayer);
        Module("text_model.final_layer_norm.", p + "ln_final.");
    }

    // ---------------------------------------------------------------- the architecture from the shapes

    /// <summary>
    /// The architecture an LDM checkpoint's shapes describe, with what shapes cannot say taken from the family's release:
    /// SD 1.x — 8 heads per UNet level, quick_gelu CLIP, 512², PNDM; SD 2.x — 64-channel heads in the UNet, GELU OpenCLIP
    /// whose last resblock is not used, 768² v-prediction DDIM (SD 2.1; <c>--arch sd-turbo</c> for 512² Euler); both: 64-channel
    /// text heads, 32 normalisation groups, VAE scaling 0.18215. Levels, layers, widths, cross-attention levels, the
    /// projection kind (2-D Linear or 1×1 conv proj_in), the text width, layers, MLP width, vocabulary and positions are read.
    /// </summary>
    public static StableDiffusionConfig Infer(IReadOnlyDictionary<string, long[]> shapes, LdmFamily family, string file)
    {
        long[] Shape(string key) => shapes.TryGetValue(key, out var s) ? s
            : throw new ConversionException(ConversionProblem.MissingKeys, file, $"lacks '{key}', which the {Describe(family)} layout's architecture is read from; the checkpoint is incomplete", [key]);
        int Count(string pattern) => shapes.Keys.Select(k => Regex.Match(k, pattern)).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value)).DefaultIfEmpty(-1).Max() + 1;
        bool Has(string key) => shapes.ContainsKey(key);
        const string u = UNetPrefix;

        // the UNet: the first Downsample's position gives layers_per_block; the Downsamples count the levels
        int inputBlocks = Count(@"^model\.diffusion_model\.input_blocks\.(\d+)\.");
        int firstDown = Enumerable.Range(1, Math.Max(inputBlocks - 1, 0)).FirstOrDefault(b => Has($"{u}input_blocks.{b}.0.op.weight"));
        int layers = firstDown > 0 ? firstDown - 1 : inputBlocks - 1;
        if (layers < 1) throw new ConversionException(ConversionProblem.UnknownArchitecture, file, $"has {inputBlocks} UNet input_blocks, too few for a Stable Diffusion UNet");
        int levels = (inputBlocks - 1) / (layers + 1) + 1;
        var channels = new int[levels];
        var cross = new bool[levels];
        bool? linear = null;
        int crossDim = 0;
        for (int i = 0; i < levels; i++)
        {
            int block = 1 + i * (layers + 1);
            channels[i] = (int)Shape($"{u}input_blocks.{block}.0.out_layers.3.weight")[0];
            string proj = $"{u}input_blocks.{block}.1.proj_in.weight";
            cross[i] = Has(proj);
            if (!cross[i]) continue;
            linear ??= Shape(proj).Length == 2;
            crossDim = (int)Shape($"{u}input_blocks.{block}.1.transformer_blocks.0.attn2.to_k.weight")[1];
        }
        if (crossDim == 0) throw new ConversionException(ConversionProblem.UnknownArchitecture, file, "has no cross-attention in its UNet; not a text-to-image Stable Diffusion UNet");
        var heads = channels.Select(ch => family == LdmFamily.Sd1 ? 8 : Math.Max(1, ch / 64)).ToArray();
        var conv = Shape(u + "input_blocks.0.0.weight");
        var unet = new UNetConfig(channels, layers, heads, crossDim, linear ?? false, cross, InChannels: (int)conv[1], OutChannels: (int)Shape(u + "out.2.weight")[0]);

        const string v = VaePrefix + "encoder.";
        int vaeLevels = Count(@"^first_stage_model\.encoder\.down\.(\d+)\.");
        int vaeLayers = Count(@"^first_stage_model\.encoder\.down\.0\.block\.(\d+)\.");
        var vae = new VaeConfig([.. Enumerable.Range(0, vaeLevels).Select(i => (int)Shape($"{v}down.{i}.block.0.conv2.weight")[0])], vaeLayers,
            LatentChannels: (int)Shape(VaePrefix + "post_quant_conv.weight")[0], ImageChannels: (int)Shape(v + "conv_in.weight")[1]);

        ClipTextConfig text;
        if (family == LdmFamily.Sd1)
        {
            string t = shapes.Keys.Any(k => k.StartsWith(Sd1TextPrefix + "text_model.", StringComparison.Ordinal)) ? Sd1TextPrefix + "text_model." : Sd1TextPrefix;
            var embedding = Shape(t + "embeddings.token_embedding.weight");
            int width = (int)embedding[1];
            text = new ClipTextConfig((int)embedding[0], width, Count(@"^cond_stage_model\.transformer\.(?:text_model\.)?encoder\.layers\.(\d+)\."), Math.Max(1, width / 64),
                (int)Shape(t + "encoder.layers.0.mlp.fc1.weight")[0], (int)Shape(t + "embeddings.position_embedding.weight")[0], ClipActivation.QuickGelu);
        }
        else
        {
            const string t = Sd2TextPrefix;
            var embedding = Shape(t + "token_embedding.weight");
            int width = (int)embedding[1];
            int blocks = Count(@"^cond_stage_model\.model\.transformer\.resblocks\.(\d+)\.");
            if (blocks < 2) throw new ConversionException(ConversionProblem.UnknownArchitecture, file, $"has {blocks} OpenCLIP resblocks; SD 2.x uses the penultimate of at least two");
            text = new ClipTextConfig((int)embedding[0], width, blocks - 1, Math.Max(1, width / 64),
                (int)Shape(t + "transformer.resblocks.0.mlp.c_fc.weight")[0], (int)Shape(t + "positional_embedding")[0], ClipActivation.Gelu);
        }
        var release = family == LdmFamily.Sd1 ? StableDiffusionConfig.Sd15 : StableDiffusionConfig.Sd21;
        return new StableDiffusionConfig("custom", text, unet, vae, release.Scheduler, release.PadToken, release.ImageSize);
    }
}
