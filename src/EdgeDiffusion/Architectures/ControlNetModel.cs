using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// Sizes of a diffusers ControlNetModel: the down half of the UNet it steers (<see cref="UNet"/>: its time embedding,
/// conv_in, down blocks and mid block; the up levels and output convs do not exist here) and the conditioning embedding,
/// a conv stack from the control image down to the latent grid (<see cref="ConditioningEmbeddingChannels"/>, one stride-2
/// step between consecutive entries).
/// </summary>
public sealed record ControlNetConfig(UNetConfig UNet, IReadOnlyList<int> ConditioningEmbeddingChannels, int ConditioningChannels = 3)
{
    /// <summary>diffusers' default conditioning_embedding_out_channels (every SD 1.5 / 2.1 ControlNet's).</summary>
    public static IReadOnlyList<int> DefaultConditioningEmbeddingChannels { get; } = [16, 32, 96, 256];

    /// <summary>An SD 1.5 ControlNet (the layout of lllyasviel's sd-controlnet-* and control_v11p_sd15_* models).</summary>
    public static ControlNetConfig Sd15 { get; } = new(UNetConfig.Sd15, DefaultConditioningEmbeddingChannels);

    /// <summary>The channels of each down_block residual, in output order (conv_in's, each down block layer's, each downsampler's).</summary>
    public IReadOnlyList<int> ResidualChannels
    {
        get
        {
            var ch = UNet.BlockOutChannels;
            var list = new List<int> { ch[0] };
            for (int i = 0; i < ch.Count; i++)
            {
                list.AddRange(Enumerable.Repeat(ch[i], UNet.LayersPerBlock));
                if (i < ch.Count - 1) list.Add(ch[i]);
            }
            return list;
        }
    }

    internal void Validate()
    {
        UNet.Validate();
        if (ConditioningEmbeddingChannels.Count < 1 || ConditioningEmbeddingChannels.Any(c => c < 1) || ConditioningChannels < 1)
            throw new InvalidArgumentException("controlnet config", "conditioning_embedding_out_channels and conditioning_channels must be positive");
    }
}

/// <summary>
/// diffusers' ControlNetModel with the signature OnnxStack and optimum export (and <see cref="ControlNets.OnnxControlNet"/>
/// runs): <c>sample</c>, <c>timestep</c>, <c>encoder_hidden_states</c> (as the UNet's), <c>controlnet_cond</c>
/// [batch, 3, 8·height, 8·width] (pixels in [0, 1]), <c>conditioning_scale</c> [1] → <c>down_block_{i}_additional_residual</c>
/// per UNet skip and <c>mid_block_additional_residual</c>, each multiplied by the scale. The down half is the UNet builder's
/// own (<see cref="UNet2DConditionModel.UNetGraph"/>), so the parameter names are the same as the UNet's.
/// </summary>
public static class ControlNetModel
{
    public const string MidResidualName = "mid_block_additional_residual";

    public static string DownResidualName(int index) => $"down_block_{index}_additional_residual";

    /// <summary>
    /// A residual's dimensions: its own symbolic height and width (the residuals are the latent grid at different levels,
    /// and a session that binds the latent size to one name must not bind the smaller levels to it too).
    /// </summary>
    internal static Dim[] ResidualDims(string name, Dim batch, long channels) => [batch, channels, $"{name}_height", $"{name}_width"];

    /// <summary>Builds the graph, declaring parameters through <paramref name="sink"/> under diffusers' names.</summary>
    public static ModelProto Build(ControlNetConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var u = config.UNet;
        var g = new GraphBuilder(options.Opset, "controlnet");
        var L = new Layers(g, sink);
        var (sample, timestep, context, batch) = UNet2DConditionModel.DeclareInputs(g, u, options);
        var cond = g.Input("controlnet_cond", DT.Float, [batch, config.ConditioningChannels, "image_height", "image_width"]);
        var scale = g.Input("conditioning_scale", DT.Float, [1]);

        var unet = new UNet2DConditionModel.UNetGraph(L, u, context);
        unet.TimeEmbedding(timestep);
        var h = L.Conv2d(sample, "conv_in", u.InChannels, u.BlockOutChannels[0], 3);
        h = g.Add(h, ConditioningEmbedding(L, cond, config));
        var skips = unet.DownBlocks(ref h);
        h = unet.MidBlock(h);

        for (int i = 0; i < skips.Count; i++)
        {
            var (value, channels) = skips[i];
            string name = DownResidualName(i);
            g.Mul(L.Conv2d(value, $"controlnet_down_blocks.{i}", channels, channels, 1), scale, name);
            g.Output(name, DT.Float, ResidualDims(name, batch, channels));
        }
        long midChannels = u.BlockOutChannels[^1];
        g.Mul(L.Conv2d(h, "controlnet_mid_block", midChannels, midChannels, 1), scale, MidResidualName);
        g.Output(MidResidualName, DT.Float, ResidualDims(MidResidualName, batch, midChannels));
        return g.Build();
    }

    /// <summary>The parameters (name, shape) of a config, from a shapes-only build.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(ControlNetConfig config)
    {
        var sink = new ShapeOnlyParameters();
        Build(config, sink);
        return sink.Declared;
    }

    /// <summary>
    /// ControlNetConditioningEmbedding: conv_in (3×3) and SiLU, then per step between consecutive widths a 3×3 conv and a
    /// 3×3 stride-2 conv (blocks.2k, blocks.2k+1), each followed by SiLU, then conv_out (3×3) to the UNet's first width.
    /// </summary>
    private static string ConditioningEmbedding(Layers L, string cond, ControlNetConfig config)
    {
        var g = L.G;
        var ch = config.ConditioningEmbeddingChannels;
        using var _ = L.Scope("controlnet_cond_embedding");
        var h = g.SiLU(L.Conv2d(cond, "conv_in", config.ConditioningChannels, ch[0], 3));
        for (int i = 0; i < ch.Count - 1; i++)
        {
            h = g.SiLU(L.Conv2d(h, $"blocks.{2 * i}", ch[i], ch[i], 3));
            h = g.SiLU(L.Conv2d(h, $"blocks.{2 * i + 1}", ch[i], ch[i + 1], 3, stride: 2));
        }
        return L.Conv2d(h, "conv_out", ch[^1], config.UNet.BlockOutChannels[0], 3);
    }
}
