using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>The kinds of block a Stable Cascade UNet level repeats (diffusers' block_types_per_layer entries).</summary>
public enum CascadeBlock
{
    /// <summary>SDCascadeResBlock: depthwise conv, channel LayerNorm, Linear → GELU → GlobalResponseNorm → Linear, residual.</summary>
    ResBlock,

    /// <summary>SDCascadeTimestepBlock: x·(1 + a) + b with a, b from the timestep-ratio embeddings.</summary>
    TimestepBlock,

    /// <summary>SDCascadeAttnBlock: attention of the normalised map over itself plus the mapped text conditioning.</summary>
    AttnBlock,
}

/// <summary>
/// Sizes of a diffusers StableCascadeUNet, field for field as its config.json names them. Up-path lists
/// (<see cref="UpLayers"/>, <see cref="UpRepeatMappers"/>) run deepest level first, as diffusers' configs give them.
/// A null <see cref="SwitchLevel"/> means 2×2 stride-2 conv / transposed-conv resampling (Stage B); otherwise each level
/// change is a LayerNorm + UpDownBlock2d whose bilinear resampling is on only where the flag is true (Stage C: [false]).
/// </summary>
public sealed record StableCascadeUNetConfig(
    int InChannels,
    int OutChannels,
    int PatchSize,
    int ConditioningDim,
    IReadOnlyList<int> BlockOutChannels,
    IReadOnlyList<int> Heads,
    IReadOnlyList<int> DownLayers,
    IReadOnlyList<int> UpLayers,
    IReadOnlyList<int> DownRepeatMappers,
    IReadOnlyList<int> UpRepeatMappers,
    IReadOnlyList<IReadOnlyList<CascadeBlock>> BlockTypes,
    int ClipTextPooledChannels,
    int? ClipTextChannels,
    int? ClipImageChannels,
    int ClipSeq,
    int? EffnetChannels,
    int? PixelMapperChannels,
    IReadOnlyList<string> TimestepConditioning,
    IReadOnlyList<bool>? SwitchLevel,
    int TimestepEmbeddingDim = 64,
    int KernelSize = 3,
    bool SelfAttention = true)
{
    private static readonly IReadOnlyList<CascadeBlock> ResTime = [CascadeBlock.ResBlock, CascadeBlock.TimestepBlock];
    private static readonly IReadOnlyList<CascadeBlock> ResTimeAttn = [CascadeBlock.ResBlock, CascadeBlock.TimestepBlock, CascadeBlock.AttnBlock];

    /// <summary>Stage C lite (the 1B prior, stabilityai/stable-cascade prior_lite): 1,030,785,040 parameters.</summary>
    public static StableCascadeUNetConfig PriorLite { get; } = new(
        InChannels: 16, OutChannels: 16, PatchSize: 1, ConditioningDim: 1536,
        BlockOutChannels: [1536, 1536], Heads: [24, 24], DownLayers: [4, 12], UpLayers: [12, 4],
        DownRepeatMappers: [1, 1], UpRepeatMappers: [1, 1], BlockTypes: [ResTimeAttn, ResTimeAttn],
        ClipTextPooledChannels: 1280, ClipTextChannels: 1280, ClipImageChannels: 768, ClipSeq: 4,
        EffnetChannels: null, PixelMapperChannels: null, TimestepConditioning: ["sca", "crp"], SwitchLevel: [false]);

    /// <summary>Stage B lite (the 700M decoder, stabilityai/stable-cascade decoder_lite): 699,471,248 parameters.</summary>
    public static StableCascadeUNetConfig DecoderLite { get; } = new(
        InChannels: 4, OutChannels: 4, PatchSize: 2, ConditioningDim: 1280,
        BlockOutChannels: [320, 576, 1152, 1152], Heads: [0, 9, 18, 18], DownLayers: [2, 4, 14, 4], UpLayers: [4, 14, 4, 2],
        DownRepeatMappers: [1, 1, 1, 1], UpRepeatMappers: [2, 2, 2, 2], BlockTypes: [ResTime, ResTime, ResTimeAttn, ResTimeAttn],
        ClipTextPooledChannels: 1280, ClipTextChannels: null, ClipImageChannels: null, ClipSeq: 4,
        EffnetChannels: 16, PixelMapperChannels: 3, TimestepConditioning: ["sca"], SwitchLevel: null);

    /// <summary>A prior of the lite kind small enough for tests (two 32-channel levels, one layer each).</summary>
    public static StableCascadeUNetConfig TinyPrior { get; } = PriorLite with
    {
        ConditioningDim = 32, BlockOutChannels = [32, 32], Heads = [2, 2], DownLayers = [1, 1], UpLayers = [1, 1],
        ClipTextPooledChannels = 32, ClipTextChannels = 32, ClipImageChannels = 16,
    };

    /// <summary>A decoder of the lite kind small enough for tests: four levels, patch 2, repeat mappers, effnet and pixel mappers.</summary>
    public static StableCascadeUNetConfig TinyDecoder { get; } = DecoderLite with
    {
        ConditioningDim = 32, BlockOutChannels = [8, 16, 32, 32], Heads = [0, 0, 2, 2], DownLayers = [1, 1, 1, 1], UpLayers = [1, 1, 1, 1],
        ClipTextPooledChannels = 32,
    };

    /// <summary>How much smaller than the sample each level's map is: PatchSize, then ×2 at every resampling level change.</summary>
    public int DownscaleFactor
    {
        get
        {
            int f = PatchSize;
            for (int i = 1; i < BlockOutChannels.Count; i++)
                if (SwitchLevel is null || SwitchLevel[i - 1]) f *= 2;
            return f;
        }
    }

    internal void Validate()
    {
        int n = BlockOutChannels.Count;
        Check(n >= 1 && Heads.Count == n && DownLayers.Count == n && UpLayers.Count == n && DownRepeatMappers.Count == n
              && UpRepeatMappers.Count == n && BlockTypes.Count == n, "every per-level list needs one entry per level");
        Check(SwitchLevel is null || SwitchLevel.Count >= n - 1, "switch_level needs an entry per level change");
        Check(InChannels >= 1 && OutChannels >= 1 && PatchSize >= 1 && ConditioningDim >= 1 && ClipTextPooledChannels >= 1 && ClipSeq >= 1,
            "sizes must be positive");
        Check(KernelSize >= 1 && KernelSize % 2 == 1, "the depthwise kernel must be odd (same padding)");
        Check(TimestepEmbeddingDim >= 4 && TimestepEmbeddingDim % 2 == 0, "the timestep-ratio embedding must be even (sin and cos halves)");
        Check(ClipTextChannels is null == ClipImageChannels is null, "clip_text and clip_img conditioning come together (diffusers uses both or neither)");
        Check(TimestepConditioning.All(c => c is "sca" or "crp"), "timestep conditioning types are 'sca' and 'crp'");
        for (int i = 0; i < n; i++)
        {
            Check(BlockOutChannels[i] >= 1 && DownLayers[i] >= 0 && UpLayers[n - 1 - i] >= 0
                  && DownRepeatMappers[i] >= 1 && UpRepeatMappers[n - 1 - i] >= 1, $"level {i}'s sizes must be positive");
            Check(BlockTypes[i].Count >= 1 && BlockTypes[i][0] == CascadeBlock.ResBlock, $"level {i}'s layers must start with a ResBlock (it takes the skip)");
            if (BlockTypes[i].Contains(CascadeBlock.AttnBlock))
                Check(Heads[i] >= 1 && BlockOutChannels[i] % Heads[i] == 0, $"level {i}'s {BlockOutChannels[i]} channels do not split into {Heads[i]} heads");
        }
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("stable cascade unet config", problem);
    }
}

/// <summary>
/// diffusers' StableCascadeUNet (Stage C prior and Stage B decoder of Stable Cascade) as an ONNX graph. Inputs:
/// <c>sample</c> [batch, in, height, width], <c>timestep_ratio</c> float [batch], <c>clip_text_pooled</c> [batch, 1, pooled],
/// then <c>clip_text</c> [batch, sequence, text] and <c>clip_img</c> [batch, 1, image] when the config maps them (prior),
/// and <c>effnet</c> [batch, effnet, h, w] when it has an effnet mapper (decoder) → <c>out_sample</c> [batch, out, height, width].
/// The optional sca/crp conditions are not inputs: the pipelines leave them unset, so their embeddings are those of 0, and
/// the decoder's <c>pixels</c> are the zeros diffusers substitutes.
/// </summary>
public static class StableCascadeUNet
{
    private const float NormEps = 1e-6f; // every SDCascadeLayerNorm and clip_norm
    private const float GrnEps = 1e-6f;

    /// <summary>Builds the graph, declaring parameters through <paramref name="sink"/> under diffusers' names.</summary>
    public static ModelProto Build(StableCascadeUNetConfig config, ParameterSink sink, ExportOptions? options = null, string graphName = "stable_cascade_unet")
    {
        config.Validate();
        options ??= new ExportOptions();
        if (options.UNetBatch is < 1) throw new InvalidArgumentException(nameof(options.UNetBatch), "a fixed batch must be at least 1");
        var g = new GraphBuilder(options.Opset, graphName);
        var L = new Layers(g, sink);
        Dim batch = options.UNetBatch is int b ? b : "batch_size";

        var sample = g.Input("sample", DT.Float, [batch, config.InChannels, "height", "width"]);
        var ratio = g.Input("timestep_ratio", DT.Float, [batch]);
        var pooled = g.Input("clip_text_pooled", DT.Float, [batch, 1, config.ClipTextPooledChannels]);
        string? text = null, image = null, effnet = null;
        if (config.ClipTextChannels is int textChannels)
        {
            text = g.Input("clip_text", DT.Float, [batch, "sequence_length", textChannels]);
            image = g.Input("clip_img", DT.Float, [batch, 1, config.ClipImageChannels!.Value]);
        }
        if (config.EffnetChannels is int effnetChannels)
            effnet = g.Input("effnet", DT.Float, [batch, effnetChannels, "effnet_height", "effnet_width"]);

        var y = new CascadeGraph(L, config).Forward(sample, ratio, pooled, text, image, effnet);
        g.Identity(y, "out_sample");
        g.Output("out_sample", DT.Float, [batch, config.OutChannels, "height", "width"]);
        return g.Build();
    }

    /// <summary>The parameters (name, shape) of a config, from a shapes-only build.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(StableCascadeUNetConfig config)
    {
        var sink = new ShapeOnlyParameters();
        Build(config, sink);
        return sink.Declared;
    }

    /// <summary>
    /// diffusers' get_timestep_ratio_embedding: r = ratio·10000, [sin(r·f_k) …, cos(r·f_k) …] with
    /// f_k = exp(−k·ln(10000)/(dim/2 − 1)), k = 0 … dim/2 − 1; [batch] → [batch, dim].
    /// </summary>
    internal static string TimestepRatioEmbedding(GraphBuilder g, string ratio, int dim)
    {
        int half = dim / 2;
        var freqs = new float[half];
        for (int k = 0; k < half; k++) freqs[k] = (float)Math.Exp(-k * Math.Log(10000.0) / (half - 1));
        var args = g.Mul(g.Unsqueeze(g.Mul(ratio, g.Constant(10000f)), [1]), g.Constant(freqs));
        return g.Concat([g.Sin(args), g.Cos(args)], 1);
    }

    /// <summary>
    /// PyTorch's PixelUnshuffle on [N, C, H, W]: output channel c·r² + i·r + j holds x[c, h·r + i, w·r + j]. ONNX SpaceToDepth
    /// orders channels block-first ((i·r + j)·C + c), so a constant Gather reorders them.
    /// </summary>
    internal static string PixelUnshuffle(GraphBuilder g, string x, long channels, int factor)
    {
        if (factor == 1) return x;
        long r2 = (long)factor * factor;
        var order = new long[channels * r2];
        for (long c = 0; c < channels; c++)
            for (long block = 0; block < r2; block++)
                order[c * r2 + block] = block * channels + c;
        var blocks = g.Node("SpaceToDepth", [x], 1, [Attr.Int("blocksize", factor)])[0];
        return g.Gather(blocks, g.Constant(order), 1);
    }

    /// <summary>PyTorch's PixelShuffle: ONNX DepthToSpace in CRD mode is the same mapping.</summary>
    internal static string PixelShuffle(GraphBuilder g, string x, int factor) =>
        factor == 1 ? x : g.Node("DepthToSpace", [x], 1, [Attr.Int("blocksize", factor), Attr.String("mode", "CRD")])[0];

    /// <summary>Bilinear resize (align_corners=True, as every interpolate in the model) of x to the spatial size of <paramref name="like"/>.</summary>
    internal static string ResizeLike(GraphBuilder g, string x, string like)
    {
        var sizes = g.Concat([g.Shape(x, 0, 2), g.Shape(like, 2, 4)], 0);
        return g.Node("Resize", [x, "", "", sizes], 1,
            [Attr.String("mode", "linear"), Attr.String("coordinate_transformation_mode", "align_corners")])[0];
    }

    /// <summary>The forward pass; one method per diffusers module.</summary>
    private sealed class CascadeGraph
    {
        private readonly Layers _declaring;
        private readonly GraphBuilder g;
        private readonly Layers _reusing;
        private readonly StableCascadeUNetConfig c;
        private Layers L;

        public CascadeGraph(Layers declaring, StableCascadeUNetConfig config)
        {
            // The values parameters are read through are recorded as declared: a sink may return another value than the
            // initializer (a float16 weight's Cast to float32), and repeated runs must read the same one.
            var recorded = new RecordingParameters(declaring.Sink);
            g = declaring.G;
            c = config;
            _declaring = L = new Layers(g, recorded);
            _reusing = new Layers(g, new AlreadyDeclaredParameters(recorded.Values));
        }

        private readonly Dictionary<long, string> _ones = [];
        private string[] _timeChunks = [];
        private string _clip = "";

        public string Forward(string sample, string ratio, string pooled, string? text, string? image, string? effnet)
        {
            var ch = c.BlockOutChannels;
            int n = ch.Count;
            _timeChunks = TimestepChunks(ratio);
            _clip = ClipEmbeddings(pooled, text, image);

            var x = PixelUnshuffle(g, sample, c.InChannels, c.PatchSize);
            x = ChannelNorm(L.Conv2d(x, "embedding.1", (long)c.InChannels * c.PatchSize * c.PatchSize, ch[0], 1), ch[0]);
            if (effnet is not null)
                x = g.Add(x, ConditionMapper(ResizeLike(g, effnet, x), "effnet_mapper", c.EffnetChannels!.Value));
            if (c.PixelMapperChannels is int pixelChannels)
            {
                // diffusers maps zeros [N, 3, 8, 8] when no pixels are given; the result is the same for every sample, so batch 1 broadcasts
                var zeros = g.Constant(TensorData.Create<float>("", [1, pixelChannels, 8, 8], new float[pixelChannels * 64]));
                x = g.Add(x, ResizeLike(g, ConditionMapper(zeros, "pixels_mapper", pixelChannels), x));
            }

            // down path: each level's output is kept for the up path's skip
            var levels = new string[n];
            for (int i = 0; i < n; i++)
            {
                if (i > 0) x = Downscaler(x, i);
                x = RepeatedLevel(x, $"down_blocks.{i}", $"down_repeat_mappers.{i}", i, c.DownLayers[i], c.DownRepeatMappers[i], skip: null);
                levels[i] = x;
            }

            // up path: up index u runs over levels n−1 … 0
            for (int u = 0; u < n; u++)
            {
                int i = n - 1 - u;
                string? skip = u > 0 ? levels[i] : null;
                // a stride-2 conv floors odd sizes, so diffusers resizes the upsampled map onto its skip's size when they differ
                if (skip is not null && Resamples(i + 1)) x = ResizeLike(g, x, skip);
                x = RepeatedLevel(x, $"up_blocks.{u}", $"up_repeat_mappers.{u}", i, c.UpLayers[u], c.UpRepeatMappers[u], skip);
                if (i > 0) x = Upscaler(x, u, i);
            }

            x = L.Conv2d(ChannelNorm(x, ch[0]), "clf.1", ch[0], (long)c.OutChannels * c.PatchSize * c.PatchSize, 1);
            return PixelShuffle(g, x, c.PatchSize);
        }

        /// <summary>Whether the change into level <paramref name="level"/> resamples the map.</summary>
        private bool Resamples(int level) => c.SwitchLevel is null || c.SwitchLevel[level - 1];

        /// <summary>
        /// One level's layers (block types × <paramref name="layers"/>), run <paramref name="repeats"/> times with a 1×1
        /// repeat-mapper conv between runs; the skip joins the level's first ResBlock on every run.
        /// </summary>
        private string RepeatedLevel(string x, string blocksScope, string mappersScope, int level, int layers, int repeats, string? skip)
        {
            long ch = c.BlockOutChannels[level];
            var types = c.BlockTypes[level];
            for (int r = 0; r < repeats; r++)
            {
                // repeats run the level's same modules again (shared weights), so later runs only refer to the parameters
                L = r == 0 ? _declaring : _reusing;
                int index = 0;
                for (int layer = 0; layer < layers; layer++)
                    foreach (var type in types)
                    {
                        using (L.Scope($"{blocksScope}.{index}"))
                            x = type switch
                            {
                                CascadeBlock.ResBlock => ResBlock(x, ch, index == 0 ? skip : null),
                                CascadeBlock.TimestepBlock => TimestepBlock(x, ch),
                                _ => AttnBlock(x, ch, c.Heads[level]),
                            };
                        index++;
                    }
                L = _declaring;
                if (r < repeats - 1) x = L.Conv2d(x, $"{mappersScope}.{r}", ch, ch, 1);
            }
            return x;
        }

        private string Downscaler(string x, int level)
        {
            long from = c.BlockOutChannels[level - 1], to = c.BlockOutChannels[level];
            using var _ = L.Scope($"down_downscalers.{level}");
            x = ChannelNorm(x, from);
            if (c.SwitchLevel is null) return L.Conv2d(x, "1", from, to, 2, 2, pads: [0, 0, 0, 0]);
            x = L.Conv2d(x, "1.blocks.0", from, to, 1);
            return c.SwitchLevel[level - 1] ? Bilinear(x, 0.5f) : x;
        }

        private string Upscaler(string x, int upIndex, int level)
        {
            long from = c.BlockOutChannels[level], to = c.BlockOutChannels[level - 1];
            using var _ = L.Scope($"up_upscalers.{upIndex}");
            x = ChannelNorm(x, from);
            if (c.SwitchLevel is not null)
            {
                if (c.SwitchLevel[level - 1]) x = Bilinear(x, 2f);
                return L.Conv2d(x, "1.blocks.1", from, to, 1);
            }
            using (L.Scope("1"))
            {
                // nn.ConvTranspose2d(k=2, s=2): weight [in, out, 2, 2]; PyTorch's default bound uses fan_in = out·k·k
                float bound = 1f / MathF.Sqrt(to * 4);
                var w = L.Param("weight", [from, to, 2, 2], ParameterInit.Random, bound);
                var b = L.Param("bias", [to], ParameterInit.Random, bound);
                return g.Node("ConvTranspose", [x, w, b], 1, [Attr.Ints("kernel_shape", [2, 2]), Attr.Ints("strides", [2, 2])])[0];
            }
        }

        private string Bilinear(string x, float scale) =>
            g.Resize(x, [1f, 1f, scale, scale], "linear", "align_corners");

        /// <summary>effnet_mapper / pixels_mapper: 1×1 conv to 4·c0, GELU, 1×1 conv to c0, channel LayerNorm.</summary>
        private string ConditionMapper(string x, string module, long inChannels)
        {
            long c0 = c.BlockOutChannels[0];
            using var _ = L.Scope(module);
            var h = g.Gelu(L.Conv2d(x, "0", inChannels, c0 * 4, 1));
            return ChannelNorm(L.Conv2d(h, "2", c0 * 4, c0, 1), c0);
        }

        /// <summary>
        /// The timestep-ratio embedding of the ratio, then of 0 for each sca/crp condition (the pipelines never set them),
        /// as the per-mapper chunks SDCascadeTimestepBlock splits the concatenation into.
        /// </summary>
        private string[] TimestepChunks(string ratio)
        {
            int dim = c.TimestepEmbeddingDim;
            var chunks = new List<string> { TimestepRatioEmbedding(g, ratio, dim) };
            if (c.TimestepConditioning.Count > 0)
            {
                var zero = TimestepRatioEmbedding(g, g.Mul(ratio, g.Constant(0f)), dim);
                foreach (var _ in c.TimestepConditioning) chunks.Add(zero);
            }
            return [.. chunks];
        }

        /// <summary>get_clip_embeddings: [text mapped, pooled mapped to clip_seq tokens, image mapped to clip_seq tokens], LayerNorm without affine.</summary>
        private string ClipEmbeddings(string pooled, string? text, string? image)
        {
            long d = c.ConditioningDim;
            var tokens = new List<string>();
            if (text is not null) tokens.Add(L.Linear(text, "clip_txt_mapper", c.ClipTextChannels!.Value, d));
            tokens.Add(g.Reshape(L.Linear(pooled, "clip_txt_pooled_mapper", c.ClipTextPooledChannels, d * c.ClipSeq), [0, -1, d]));
            if (image is not null)
                tokens.Add(g.Reshape(L.Linear(image, "clip_img_mapper", c.ClipImageChannels!.Value, d * c.ClipSeq), [0, -1, d]));
            var clip = tokens.Count == 1 ? tokens[0] : g.Concat(tokens, 1);
            return g.LayerNormalization(clip, Ones(d), null, -1, NormEps);
        }

        /// <summary>SDCascadeResBlock (see <see cref="CascadeBlock.ResBlock"/>); the channelwise part runs channels-last.</summary>
        private string ResBlock(string x, long ch, string? skip)
        {
            int k = c.KernelSize;
            string h;
            using (L.Scope("depthwise"))
            {
                float bound = 1f / MathF.Sqrt(k * k); // fan_in of a depthwise conv: 1 input channel per group
                var w = L.Param("weight", [ch, 1, k, k], ParameterInit.Random, bound);
                var b = L.Param("bias", [ch], ParameterInit.Random, bound);
                long p = k / 2;
                h = g.Conv(x, w, b, pads: [p, p, p, p], group: ch);
            }
            h = g.LayerNormalization(g.Transpose(h, [0, 2, 3, 1]), Ones(ch), null, -1, NormEps);
            long inWidth = ch;
            if (skip is not null)
            {
                h = g.Concat([h, g.Transpose(skip, [0, 2, 3, 1])], -1);
                inWidth += ch; // diffusers' c_skip is the level's own width
            }
            h = g.Gelu(L.Linear(h, "channelwise.0", inWidth, ch * 4));
            h = GlobalResponseNorm(h, "channelwise.2", ch * 4);
            h = L.Linear(h, "channelwise.4", ch * 4, ch);
            return g.Add(g.Transpose(h, [0, 3, 1, 2]), x);
        }

        /// <summary>
        /// ConvNeXt-V2 GlobalResponseNorm on channels-last x: n = ‖x‖₂ over H, W per channel; γ·(x·n/(mean_c n + ε)) + β + x.
        /// γ and β start at 0 in PyTorch, which would make the norm an identity; random values keep the path exercised.
        /// </summary>
        private string GlobalResponseNorm(string x, string module, long width)
        {
            using var _ = L.Scope(module);
            var gamma = L.Param("gamma", [1, 1, 1, width], ParameterInit.Random, 0.1f);
            var beta = L.Param("beta", [1, 1, 1, width], ParameterInit.Random, 0.1f);
            var norm = g.Sqrt(g.ReduceSum(g.Mul(x, x), [1, 2]));
            var scaled = g.Div(norm, g.Add(g.ReduceMean(norm, [-1]), g.Constant(GrnEps)));
            return g.Add(g.Add(g.Mul(gamma, g.Mul(x, scaled)), beta), x);
        }

        /// <summary>SDCascadeTimestepBlock: (a, b) = Σ mapper_k(chunk_k) split in halves; x·(1 + a) + b.</summary>
        private string TimestepBlock(string x, long ch)
        {
            long dim = c.TimestepEmbeddingDim;
            var ab = L.Linear(_timeChunks[0], "mapper", dim, ch * 2, input2D: true);
            for (int i = 0; i < c.TimestepConditioning.Count; i++)
                ab = g.Add(ab, L.Linear(_timeChunks[i + 1], $"mapper_{c.TimestepConditioning[i]}", dim, ch * 2, input2D: true));
            var halves = g.Split(g.Unsqueeze(ab, [2, 3]), 1, [ch, ch]);
            return g.Add(g.Mul(x, g.Add(halves[0], g.Constant(1f))), halves[1]);
        }

        /// <summary>SDCascadeAttnBlock: x + to_out(attention(q = norm(x), kv = [norm(x) tokens; kv_mapper(SiLU(clip))])).</summary>
        private string AttnBlock(string x, long ch, long heads)
        {
            var kv = L.Linear(g.SiLU(_clip), "kv_mapper.1", c.ConditioningDim, ch);
            var tokens = g.Reshape(g.LayerNormalization(g.Transpose(x, [0, 2, 3, 1]), Ones(ch), null, -1, NormEps), [0, -1, ch]);
            if (c.SelfAttention) kv = g.Concat([tokens, kv], 1);
            using var _ = L.Scope("attention");
            var q = L.Linear(tokens, "to_q", ch, ch);
            var k = L.Linear(kv, "to_k", ch, ch);
            var v = L.Linear(kv, "to_v", ch, ch);
            var o = L.Linear(L.Attention(q, k, v, ch, heads), "to_out.0", ch, ch);
            return g.Add(x, L.FromTokens(o, x));
        }

        /// <summary>SDCascadeLayerNorm: LayerNorm over channels of an NCHW map, without affine parameters.</summary>
        private string ChannelNorm(string x, long ch) =>
            g.Transpose(g.LayerNormalization(g.Transpose(x, [0, 2, 3, 1]), Ones(ch), null, -1, NormEps), [0, 3, 1, 2]);

        /// <summary>The unit scale LayerNormalization needs where PyTorch's LayerNorm has no affine parameters (a constant, not a parameter).</summary>
        private string Ones(long width)
        {
            if (!_ones.TryGetValue(width, out var ones))
                _ones[width] = ones = g.Constant(Enumerable.Repeat(1f, (int)width).ToArray());
            return ones;
        }
    }

    /// <summary>Hands back parameters already in the graph under their names, declaring nothing (for modules run more than once).</summary>
    /// <summary>Declares through <paramref name="inner"/> and records the value each parameter is read through.</summary>
    private sealed class RecordingParameters(ParameterSink inner) : ParameterSink
    {
        public Dictionary<string, string> Values { get; } = new(StringComparer.Ordinal);

        protected override string Create(GraphBuilder builder, ParameterInfo parameter) => Values[parameter.Name] = inner.Declare(builder, parameter);
    }

    /// <summary>Refers to parameters declared before (a repeated level's shared weights): the value they were read through.</summary>
    private sealed class AlreadyDeclaredParameters(IReadOnlyDictionary<string, string> declared) : ParameterSink
    {
        protected override string Create(GraphBuilder builder, ParameterInfo parameter) =>
            declared.TryGetValue(parameter.Name, out var value) ? value
                : throw new InvalidOperationException($"'{parameter.Name}' is reused before it is declared");
    }
}
