using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// Sizes of a diffusers UNet2DConditionModel of the SD 1.x/2.x kind. <see cref="Heads"/> is the head count per level (what
/// diffusers' configs call attention_head_dim for these models); <see cref="CrossAttention"/> says which down levels are
/// CrossAttnDownBlock2D (the rest DownBlock2D), the up levels mirroring them.
/// </summary>
public sealed record UNetConfig(
    IReadOnlyList<int> BlockOutChannels,
    int LayersPerBlock,
    IReadOnlyList<int> Heads,
    int CrossAttentionDim,
    bool UseLinearProjection,
    IReadOnlyList<bool> CrossAttention,
    int NormGroups = 32,
    float NormEps = 1e-5f,
    int InChannels = 4,
    int OutChannels = 4)
{
    /// <summary>SD 1.x: 859,520,964 parameters.</summary>
    public static UNetConfig Sd15 { get; } = new([320, 640, 1280, 1280], 2, [8, 8, 8, 8], 768, false, [true, true, true, false]);

    /// <summary>SD 2.x (and SD-Turbo): heads of 64 channels, 1024-wide text, linear projections.</summary>
    public static UNetConfig Sd21 { get; } = new([320, 640, 1280, 1280], 2, [5, 10, 20, 20], 1024, true, [true, true, true, false]);

    /// <summary>The sinusoidal timestep embedding's width (the first level's channels); the MLP widens it 4×.</summary>
    public int TimeEmbeddingDim => BlockOutChannels[0] * 4;

    internal void Validate()
    {
        int n = BlockOutChannels.Count;
        Check(n >= 1 && Heads.Count == n && CrossAttention.Count == n, "block_out_channels, heads and cross-attention flags need one entry per level");
        Check(LayersPerBlock >= 1 && CrossAttentionDim >= 1 && InChannels >= 1 && OutChannels >= 1 && NormGroups >= 1, "sizes must be positive");
        Check(BlockOutChannels[0] % 2 == 0, "the first level's channels must be even (sin and cos halves of the timestep embedding)");
        for (int i = 0; i < n; i++)
        {
            Check(BlockOutChannels[i] % NormGroups == 0, $"level {i}'s {BlockOutChannels[i]} channels are not a multiple of {NormGroups} groups");
            Check(Heads[i] >= 1 && BlockOutChannels[i] % Heads[i] == 0, $"level {i}'s {BlockOutChannels[i]} channels do not split into {Heads[i]} heads");
        }
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("unet config", problem);
    }
}

/// <summary>
/// diffusers' UNet2DConditionModel as optimum exports it: <c>sample</c> [batch, 4, h, w], <c>timestep</c>,
/// <c>encoder_hidden_states</c> [batch, sequence, cross_dim] → <c>out_sample</c> [batch, 4, h, w].
/// </summary>
public static class UNet2DConditionModel
{
    private const float TransformerNormEps = 1e-6f; // Transformer2DModel's GroupNorm
    private const float BlockLayerNormEps = 1e-5f;  // BasicTransformerBlock's LayerNorms

    /// <summary>Builds the graph, declaring parameters through <paramref name="sink"/> under diffusers' names.</summary>
    public static ModelProto Build(UNetConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var g = new GraphBuilder(options.Opset, "unet");
        var L = new Layers(g, sink);
        var (sample, timestep, context, batch) = DeclareInputs(g, config, options);

        var unet = new UNetGraph(L, config, context);
        unet.TimeEmbedding(timestep);
        var h = L.Conv2d(sample, "conv_in", config.InChannels, config.BlockOutChannels[0], 3);
        var skips = unet.DownBlocks(ref h);
        h = unet.MidBlock(h);
        if (options.ControlNetResiduals)
        {
            // UNet2DConditionModel adds down_block_additional_residuals to the skips and mid_block_additional_residual to the mid block's output
            for (int i = 0; i < skips.Count; i++)
            {
                string name = ControlNetModel.DownResidualName(i);
                g.Input(name, DT.Float, ControlNetModel.ResidualDims(name, batch, skips[i].Channels));
                skips[i] = (g.Add(skips[i].Value, name), skips[i].Channels);
            }
            g.Input(ControlNetModel.MidResidualName, DT.Float, ControlNetModel.ResidualDims(ControlNetModel.MidResidualName, batch, config.BlockOutChannels[^1]));
            h = g.Add(h, ControlNetModel.MidResidualName);
        }
        var y = unet.UpBlocksAndOut(h, skips);
        g.Identity(y, "out_sample");
        g.Output("out_sample", DT.Float, [batch, config.OutChannels, "height", "width"]);
        return g.Build();
    }

    /// <summary>sample [batch, in, height, width], timestep (the options' type), encoder_hidden_states [batch, sequence, cross_dim]: what the UNet and its ControlNet take.</summary>
    internal static (string Sample, string Timestep, string Context, Dim Batch) DeclareInputs(GraphBuilder g, UNetConfig config, ExportOptions options)
    {
        if (options.UNetBatch is < 1) throw new InvalidArgumentException(nameof(options.UNetBatch), "a fixed batch must be at least 1");
        Dim batch = options.UNetBatch is int b ? b : "batch_size";
        var sample = g.Input("sample", DT.Float, [batch, config.InChannels, "height", "width"]);
        var timestep = options.Timestep switch
        {
            TimestepInput.Int64Batch => g.Input("timestep", DT.Int64, [batch]),
            TimestepInput.Int32Batch => g.Input("timestep", DT.Int32, [batch]),
            TimestepInput.Float32Batch => g.Input("timestep", DT.Float, [batch]),
            _ => g.Input("timestep", DT.Float, []),
        };
        var context = g.Input("encoder_hidden_states", DT.Float, [batch, "sequence_length", config.CrossAttentionDim]);
        return (sample, timestep, context, batch);
    }

    /// <summary>The parameters (name, shape) of a config, from a shapes-only build.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(UNetConfig config)
    {
        var sink = new ShapeOnlyParameters();
        Build(config, sink);
        return sink.Declared;
    }

    /// <summary>
    /// diffusers' get_timestep_embedding with flip_sin_to_cos=True, downscale_freq_shift=0: for timesteps t (any numeric
    /// type, shape [N] or scalar) returns [N, dim] = [cos(t·f_k) …, sin(t·f_k) …] with f_k = exp(−ln(10000)·k/(dim/2)),
    /// k = 0 … dim/2 − 1. A scalar gives N = 1, which broadcasts over the batch like diffusers' expand.
    /// </summary>
    public static string TimestepSinusoid(GraphBuilder g, string timesteps, int dim)
    {
        int half = dim / 2;
        var freqs = new float[half];
        for (int k = 0; k < half; k++) freqs[k] = (float)Math.Exp(-Math.Log(10000.0) * k / half);
        var t = g.Reshape(g.Cast(timesteps, DT.Float), [-1, 1]);
        var args = g.Mul(t, g.Constant(freqs));
        return g.Concat([g.Cos(args), g.Sin(args)], 1);
    }

    /// <summary>
    /// The forward pass in the parts UNet2DConditionModel and ControlNetModel share, one method per diffusers module kind;
    /// tracks channel counts to size each layer. Module names are relative to the scope it is built in.
    /// </summary>
    internal sealed class UNetGraph(Layers L, UNetConfig c, string context)
    {
        private readonly GraphBuilder g = L.G;
        private string _temb = "";

        /// <summary>time_embedding (linear_1, SiLU, linear_2) of the sinusoid; every ResnetBlock2D built after it adds its projection.</summary>
        public void TimeEmbedding(string timestep)
        {
            long tembDim = c.TimeEmbeddingDim;
            var t = TimestepSinusoid(g, timestep, c.BlockOutChannels[0]);
            using (L.Scope("time_embedding"))
            {
                t = L.Linear(t, "linear_1", c.BlockOutChannels[0], tembDim, input2D: true);
                _temb = L.Linear(g.SiLU(t), "linear_2", tembDim, tembDim, input2D: true);
            }
        }

        /// <summary>
        /// down_blocks from conv_in's output <paramref name="h"/> (left as the last level's output): the skips in diffusers'
        /// order (conv_in's output, each resnet/attention pair's, each downsampler's), which the up blocks take from the end
        /// and a ControlNet turns into its down_block residuals.
        /// </summary>
        public List<(string Value, long Channels)> DownBlocks(ref string h)
        {
            var ch = c.BlockOutChannels;
            int n = ch.Count;
            var skips = new List<(string Value, long Channels)> { (h, ch[0]) };
            long hc = ch[0];
            for (int i = 0; i < n; i++)
                using (L.Scope($"down_blocks.{i}"))
                {
                    for (int j = 0; j < c.LayersPerBlock; j++)
                    {
                        h = Resnet(h, $"resnets.{j}", hc, ch[i]);
                        hc = ch[i];
                        if (c.CrossAttention[i]) h = Transformer(h, $"attentions.{j}", hc, c.Heads[i]);
                        skips.Add((h, hc));
                    }
                    if (i < n - 1)
                    {
                        h = L.Downsample2D(h, "downsamplers.0", hc);
                        skips.Add((h, hc));
                    }
                }
            return skips;
        }

        /// <summary>UNetMidBlock2DCrossAttn: resnet, transformer, resnet at the last level's width.</summary>
        public string MidBlock(string h)
        {
            long hc = c.BlockOutChannels[^1];
            using (L.Scope("mid_block"))
            {
                h = Resnet(h, "resnets.0", hc, hc);
                h = Transformer(h, "attentions.0", hc, c.Heads[^1]);
                return Resnet(h, "resnets.1", hc, hc);
            }
        }

        /// <summary>up_blocks (each resnet taking the last remaining skip), conv_norm_out, SiLU, conv_out.</summary>
        public string UpBlocksAndOut(string h, List<(string Value, long Channels)> skips)
        {
            var ch = c.BlockOutChannels;
            int n = ch.Count;
            long hc = ch[^1];
            int next = skips.Count;
            for (int i = 0; i < n; i++)
                using (L.Scope($"up_blocks.{i}"))
                {
                    int level = n - 1 - i; // up blocks mirror the down levels
                    for (int j = 0; j <= c.LayersPerBlock; j++)
                    {
                        var (skip, sc) = skips[--next];
                        h = Resnet(g.Concat([h, skip], 1), $"resnets.{j}", hc + sc, ch[level]);
                        hc = ch[level];
                        if (c.CrossAttention[level]) h = Transformer(h, $"attentions.{j}", hc, c.Heads[level]);
                    }
                    if (i < n - 1) h = L.Upsample2D(h, "upsamplers.0", hc);
                }

            h = g.SiLU(L.GroupNorm(h, "conv_norm_out", hc, c.NormGroups, c.NormEps));
            return L.Conv2d(h, "conv_out", hc, c.OutChannels, 3);
        }

        private string Resnet(string x, string module, long inChannels, long outChannels) =>
            L.ResnetBlock2D(x, module, inChannels, outChannels, c.NormGroups, c.NormEps, _temb, c.TimeEmbeddingDim);

        /// <summary>Transformer2DModel: GroupNorm → proj_in (1×1 conv, or Linear on tokens) → BasicTransformerBlock → proj_out, plus the input.</summary>
        private string Transformer(string x, string module, long channels, long heads)
        {
            using var _ = L.Scope(module);
            var h = L.GroupNorm(x, "norm", channels, c.NormGroups, TransformerNormEps);
            string tokens;
            if (c.UseLinearProjection) tokens = L.Linear(L.ToTokens(h, channels), "proj_in", channels, channels);
            else tokens = L.ToTokens(L.Conv2d(h, "proj_in", channels, channels, 1), channels);

            using (L.Scope("transformer_blocks.0"))
                tokens = TransformerBlock(tokens, channels, heads);

            h = c.UseLinearProjection
                ? L.FromTokens(L.Linear(tokens, "proj_out", channels, channels), x)
                : L.Conv2d(L.FromTokens(tokens, x), "proj_out", channels, channels, 1);
            return g.Add(h, x);
        }

        /// <summary>BasicTransformerBlock: self-attention, cross-attention on the text, GEGLU feed-forward; each pre-LayerNorm and residual.</summary>
        private string TransformerBlock(string x, long d, long heads)
        {
            x = g.Add(x, Attention(L.LayerNorm(x, "norm1", d, BlockLayerNormEps), null, "attn1", d, heads));
            x = g.Add(x, Attention(L.LayerNorm(x, "norm2", d, BlockLayerNormEps), context, "attn2", d, heads));
            var h = L.LayerNorm(x, "norm3", d, BlockLayerNormEps);
            using (L.Scope("ff.net"))
            {
                // GEGLU: one projection to 2·inner, first half the value, second half the gate
                long inner = 4 * d;
                var proj = L.Linear(h, "0.proj", d, 2 * inner);
                var parts = g.Split(proj, -1, [inner, inner]);
                h = L.Linear(g.Mul(parts[0], g.Gelu(parts[1])), "2", inner, d);
            }
            return g.Add(x, h);
        }

        /// <summary>diffusers Attention without bias on to_q/k/v: self-attention when <paramref name="kv"/> is null, else cross-attention on it.</summary>
        private string Attention(string x, string? kv, string module, long d, long heads)
        {
            using var _ = L.Scope(module);
            long kvDim = kv is null ? d : c.CrossAttentionDim;
            kv ??= x;
            var q = L.Linear(x, "to_q", d, d, bias: false);
            var k = L.Linear(kv, "to_k", kvDim, d, bias: false);
            var v = L.Linear(kv, "to_v", kvDim, d, bias: false);
            return L.Linear(L.Attention(q, k, v, d, heads), "to_out.0", d, d);
        }
    }
}
