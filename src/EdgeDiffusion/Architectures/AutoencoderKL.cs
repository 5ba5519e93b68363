using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>Sizes of a diffusers AutoencoderKL (DownEncoderBlock2D / UpDecoderBlock2D at every level).</summary>
public sealed record VaeConfig(
    IReadOnlyList<int> BlockOutChannels,
    int LayersPerBlock,
    int NormGroups = 32,
    int LatentChannels = 4,
    int ImageChannels = 3,
    float ScalingFactor = 0.18215f)
{
    /// <summary>The SD 1.x/2.x VAE: encoder + decoder + quant convs = 83,653,863 parameters.</summary>
    public static VaeConfig Sd { get; } = new([128, 256, 512, 512], 2);

    /// <summary>How many times the image side is halved on the way to the latent (2^(levels − 1)).</summary>
    public int DownscaleFactor => 1 << (BlockOutChannels.Count - 1);

    internal void Validate()
    {
        Check(BlockOutChannels.Count >= 1 && LayersPerBlock >= 1 && NormGroups >= 1 && LatentChannels >= 1 && ImageChannels >= 1, "sizes must be positive");
        foreach (int c in BlockOutChannels)
            Check(c >= 1 && c % NormGroups == 0, $"{c} channels are not a multiple of {NormGroups} groups");
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("vae config", problem);
    }
}

/// <summary>
/// diffusers' AutoencoderKL split as optimum exports it: <c>vae_encoder</c> (<c>sample</c> [batch, 3, H, W] →
/// <c>latent_sample</c> [batch, 4, H/8, W/8]) and <c>vae_decoder</c> (<c>latent_sample</c> → <c>sample</c> [batch, 3, 8h, 8w]).
/// Parameter names keep the full model's prefixes (<c>encoder.</c>, <c>quant_conv.</c>, <c>decoder.</c>, <c>post_quant_conv.</c>).
/// </summary>
public static class AutoencoderKL
{
    private const float Eps = 1e-6f; // every VAE norm

    /// <summary>
    /// The encoder: encoder → quant_conv → the posterior's mean (its first latent channels). optimum's export samples the
    /// posterior instead; the mean keeps the graph deterministic, and the pipeline adds noise itself where it wants any.
    /// </summary>
    public static ModelProto BuildEncoder(VaeConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var g = new GraphBuilder(options.Opset, "vae_encoder");
        var L = new Layers(g, sink);
        var ch = config.BlockOutChannels;
        int n = ch.Count;
        var x = g.Input("sample", DT.Float, ["batch_size", config.ImageChannels, "height", "width"]);

        string h;
        using (L.Scope("encoder"))
        {
            h = L.Conv2d(x, "conv_in", config.ImageChannels, ch[0], 3);
            long hc = ch[0];
            for (int i = 0; i < n; i++)
                using (L.Scope($"down_blocks.{i}"))
                {
                    for (int j = 0; j < config.LayersPerBlock; j++)
                    {
                        h = L.ResnetBlock2D(h, $"resnets.{j}", hc, ch[i], config.NormGroups, Eps);
                        hc = ch[i];
                    }
                    if (i < n - 1) h = L.Downsample2D(h, "downsamplers.0", hc, asymmetricPad: true);
                }
            h = MidBlock(L, h, hc, config.NormGroups);
            h = g.SiLU(L.GroupNorm(h, "conv_norm_out", hc, config.NormGroups, Eps));
            h = L.Conv2d(h, "conv_out", hc, 2 * config.LatentChannels, 3); // mean and log-variance
        }
        h = L.Conv2d(h, "quant_conv", 2 * config.LatentChannels, 2 * config.LatentChannels, 1);
        g.Slice(h, [0], [config.LatentChannels], [1], output: "latent_sample");
        g.Output("latent_sample", DT.Float, ["batch_size", config.LatentChannels, "latent_height", "latent_width"]);
        return g.Build();
    }

    /// <summary>The decoder: post_quant_conv → decoder. Latents come in unscaled (the pipeline divides by the scaling factor).</summary>
    public static ModelProto BuildDecoder(VaeConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var g = new GraphBuilder(options.Opset, "vae_decoder");
        var L = new Layers(g, sink);
        var ch = config.BlockOutChannels;
        int n = ch.Count;
        var z = g.Input("latent_sample", DT.Float, ["batch_size", config.LatentChannels, "latent_height", "latent_width"]);

        var h = L.Conv2d(z, "post_quant_conv", config.LatentChannels, config.LatentChannels, 1);
        using (L.Scope("decoder"))
        {
            long hc = ch[n - 1];
            h = L.Conv2d(h, "conv_in", config.LatentChannels, hc, 3);
            h = MidBlock(L, h, hc, config.NormGroups);
            for (int i = 0; i < n; i++)
                using (L.Scope($"up_blocks.{i}"))
                {
                    long outChannels = ch[n - 1 - i];
                    for (int j = 0; j <= config.LayersPerBlock; j++)
                    {
                        h = L.ResnetBlock2D(h, $"resnets.{j}", hc, outChannels, config.NormGroups, Eps);
                        hc = outChannels;
                    }
                    if (i < n - 1) h = L.Upsample2D(h, "upsamplers.0", hc);
                }
            h = g.SiLU(L.GroupNorm(h, "conv_norm_out", hc, config.NormGroups, Eps));
            L.G.Identity(L.Conv2d(h, "conv_out", hc, config.ImageChannels, 3), "sample");
        }
        g.Output("sample", DT.Float, ["batch_size", config.ImageChannels, "height", "width"]);
        return g.Build();
    }

    /// <summary>Encoder plus decoder parameters (name, shape), from shapes-only builds.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(VaeConfig config)
    {
        var encoder = new ShapeOnlyParameters();
        BuildEncoder(config, encoder);
        var decoder = new ShapeOnlyParameters();
        BuildDecoder(config, decoder);
        return [.. encoder.Declared, .. decoder.Declared];
    }

    /// <summary>UNetMidBlock2D without time embedding: resnet, single-head spatial self-attention, resnet.</summary>
    private static string MidBlock(Layers L, string x, long channels, long groups)
    {
        using var _ = L.Scope("mid_block");
        var h = L.ResnetBlock2D(x, "resnets.0", channels, channels, groups, Eps);
        h = SpatialAttention(L, h, "attentions.0", channels, groups);
        return L.ResnetBlock2D(h, "resnets.1", channels, channels, groups, Eps);
    }

    /// <summary>diffusers Attention with group_norm and a residual: one head over the H·W positions, biased projections.</summary>
    private static string SpatialAttention(Layers L, string x, string module, long channels, long groups)
    {
        using var _ = L.Scope(module);
        var tokens = L.ToTokens(L.GroupNorm(x, "group_norm", channels, groups, Eps), channels);
        var q = L.Linear(tokens, "to_q", channels, channels);
        var k = L.Linear(tokens, "to_k", channels, channels);
        var v = L.Linear(tokens, "to_v", channels, channels);
        var o = L.Linear(L.Attention(q, k, v, channels, 1), "to_out.0", channels, channels);
        return L.G.Add(L.FromTokens(o, x), x);
    }
}
