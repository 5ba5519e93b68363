using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// Sizes of diffusers' PaellaVQModel (Würstchen's and Stable Cascade's Stage A VQGAN), as its config.json names them.
/// The hidden widths are <see cref="EmbedDim"/>/2^(levels−1−i) per level; the decoder runs deepest (widest) level first.
/// </summary>
public sealed record PaellaVQConfig(
    int Levels = 2,
    int BottleneckBlocks = 12,
    int EmbedDim = 384,
    int LatentChannels = 4,
    int NumVqEmbeddings = 8192,
    int UpDownScaleFactor = 2,
    int ImageChannels = 3,
    float ScaleFactor = 0.3764f)
{
    /// <summary>
    /// Stable Cascade's Stage A (diffusers' defaults, warp-ai/wuerstchen vqgan): the decoder path is 15,706,842 parameters;
    /// the whole model is 18,406,714 (encoder 2,667,104 + 8192×4 codebook 32,768 + decoder).
    /// </summary>
    public static PaellaVQConfig StageA { get; } = new();

    /// <summary>A test-size Stage A: two levels of 8 and 16 channels, two bottleneck blocks.</summary>
    public static PaellaVQConfig Tiny { get; } = new(BottleneckBlocks: 2, EmbedDim: 16, NumVqEmbeddings: 16);

    /// <summary>The width of each level, shallowest first (c_levels).</summary>
    public IReadOnlyList<int> LevelChannels => [.. Enumerable.Range(0, Levels).Select(i => EmbedDim >> (Levels - 1 - i))];

    /// <summary>Image pixels per latent pixel along each side: the pixel (un)shuffle factor, then ×2 per extra level.</summary>
    public int DownscaleFactor => UpDownScaleFactor << (Levels - 1);

    internal void Validate()
    {
        Check(Levels >= 1 && BottleneckBlocks >= 1 && LatentChannels >= 1 && NumVqEmbeddings >= 1 && UpDownScaleFactor >= 1 && ImageChannels >= 1,
            "sizes must be positive");
        Check(EmbedDim >= 1 << (Levels - 1) && EmbedDim % (1 << (Levels - 1)) == 0, $"embed_dim {EmbedDim} must halve cleanly over {Levels} levels");
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("vqgan config", problem);
    }
}

/// <summary>
/// The decoding half of diffusers' PaellaVQModel as Stable Cascade runs it: <c>decode(latents, force_not_quantize=True)</c>,
/// so the vector quantizer's codebook is not part of the graph (nor counted). <c>latent_sample</c> [batch, 4, h, w] (already
/// multiplied by the config's scale_factor, as the pipeline does before decoding) → <c>sample</c> [batch, 3, h·f, w·f] with
/// f = <see cref="PaellaVQConfig.DownscaleFactor"/> (4 for Stage A).
/// </summary>
public static class PaellaVQDecoder
{
    private const float NormEps = 1e-6f;

    /// <summary>Builds the graph, declaring parameters through <paramref name="sink"/> under diffusers' names (up_blocks.…, out_block.0.…).</summary>
    public static ModelProto Build(PaellaVQConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var g = new GraphBuilder(options.Opset, "vqgan_decoder");
        var L = new Layers(g, sink);
        var levels = config.LevelChannels;
        int n = config.Levels;
        var z = g.Input("latent_sample", DT.Float, ["batch_size", config.LatentChannels, "latent_height", "latent_width"]);

        int index = 0;
        long hc = levels[n - 1];
        var h = L.Conv2d(z, $"up_blocks.{index++}.0", config.LatentChannels, hc, 1);
        for (int i = 0; i < n; i++)
        {
            hc = levels[n - 1 - i];
            for (int j = 0; j < (i == 0 ? config.BottleneckBlocks : 1); j++)
                using (L.Scope($"up_blocks.{index++}"))
                    h = MixingResidualBlock(L, h, hc, hc * 4);
            if (i < n - 1)
            {
                long to = levels[n - 2 - i];
                using (L.Scope($"up_blocks.{index++}"))
                {
                    // nn.ConvTranspose2d(k=4, s=2, p=1) doubles the size; weight [in, out, 4, 4], PyTorch's bound from fan_in = out·16
                    float bound = 1f / MathF.Sqrt(to * 16);
                    var w = L.Param("weight", [hc, to, 4, 4], ParameterInit.Random, bound);
                    var b = L.Param("bias", [to], ParameterInit.Random, bound);
                    h = g.Node("ConvTranspose", [h, w, b], 1,
                        [Attr.Ints("kernel_shape", [4, 4]), Attr.Ints("strides", [2, 2]), Attr.Ints("pads", [1, 1, 1, 1])])[0];
                }
            }
        }
        int f = config.UpDownScaleFactor;
        h = L.Conv2d(h, "out_block.0", levels[0], (long)config.ImageChannels * f * f, 1);
        g.Identity(StableCascadeUNet.PixelShuffle(g, h, f), "sample");
        g.Output("sample", DT.Float, ["batch_size", config.ImageChannels, "height", "width"]);
        return g.Build();
    }

    /// <summary>The decoder's parameters (name, shape), from a shapes-only build.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(PaellaVQConfig config)
    {
        var sink = new ShapeOnlyParameters();
        Build(config, sink);
        return sink.Declared;
    }

    /// <summary>
    /// MixingResidualBlock: x += depthwise(norm1(x)·(1 + γ0) + γ1)·γ2, then x += channelwise(norm2(x)·(1 + γ3) + γ4)·γ5, the
    /// norms being channel LayerNorms without affine and the depthwise conv replication-padded. The six γ start at 0 in
    /// PyTorch (an identity block); random values keep both branches exercised.
    /// </summary>
    private static string MixingResidualBlock(Layers L, string x, long ch, long hidden)
    {
        var g = L.G;
        var gammas = L.Param("gammas", [6], ParameterInit.Random, 0.5f);
        string Gamma(long i) => g.Gather(gammas, g.Constant(i));
        var ones = g.Constant(Enumerable.Repeat(1f, (int)ch).ToArray());
        string NormLast(string channelsLast) => g.LayerNormalization(channelsLast, ones, null, -1, NormEps);
        string Modulate(string h, long scale, long shift) => g.Add(g.Mul(h, g.Add(Gamma(scale), g.Constant(1f))), Gamma(shift));

        var t = g.Transpose(Modulate(NormLast(g.Transpose(x, [0, 2, 3, 1])), 0, 1), [0, 3, 1, 2]);
        using (L.Scope("depthwise.1"))
        {
            var padded = g.Node("Pad", [t, g.Constant(new long[] { 0, 0, 1, 1, 0, 0, 1, 1 })], 1, [Attr.String("mode", "edge")])[0];
            float bound = 1f / 3f; // fan_in 1·3·3
            var w = L.Param("weight", [ch, 1, 3, 3], ParameterInit.Random, bound);
            var b = L.Param("bias", [ch], ParameterInit.Random, bound);
            x = g.Add(x, g.Mul(g.Conv(padded, w, b, group: ch), Gamma(2)));
        }

        t = Modulate(NormLast(g.Transpose(x, [0, 2, 3, 1])), 3, 4);
        t = L.Linear(g.Gelu(L.Linear(t, "channelwise.0", ch, hidden)), "channelwise.2", hidden, ch);
        return g.Add(x, g.Mul(g.Transpose(t, [0, 3, 1, 2]), Gamma(5)));
    }
}
