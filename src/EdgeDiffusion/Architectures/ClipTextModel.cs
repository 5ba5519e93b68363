using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>The MLP activation of a CLIP text transformer.</summary>
public enum ClipActivation
{
    /// <summary>x·sigmoid(1.702·x): OpenAI CLIP (ViT-L/14, SD 1.x).</summary>
    QuickGelu,

    /// <summary>Exact (erf) GELU: OpenCLIP (ViT-H/14, SD 2.x).</summary>
    Gelu,
}

/// <summary>
/// Sizes of a transformers CLIPTextModel; a positive <see cref="ProjectionDim"/> makes it a CLIPTextModelWithProjection
/// (a bias-free text_projection of the pooled output).
/// </summary>
public sealed record ClipTextConfig(
    int VocabSize, int Width, int Layers, int Heads, int MlpWidth, int MaxPositions, ClipActivation Activation, float LayerNormEps = 1e-5f,
    int ProjectionDim = 0)
{
    /// <summary>OpenAI CLIP ViT-L/14's text model (SD 1.x): 123,060,480 parameters.</summary>
    public static ClipTextConfig VitL14 { get; } = new(49408, 768, 12, 12, 3072, 77, ClipActivation.QuickGelu);

    /// <summary>OpenCLIP ViT-H/14's text model as SD 2.x ships it (the penultimate of 24 layers is the output, so 23 layers).</summary>
    public static ClipTextConfig OpenClipVitH14 { get; } = new(49408, 1024, 23, 16, 4096, 77, ClipActivation.Gelu);

    /// <summary>OpenCLIP ViT-bigG/14's text model with projection (SDXL's second encoder, Stable Cascade's): 694,659,840 parameters.</summary>
    public static ClipTextConfig OpenClipVitBigG14 { get; } = new(49408, 1280, 32, 20, 5120, 77, ClipActivation.Gelu, ProjectionDim: 1280);

    internal void Validate()
    {
        Check(ProjectionDim >= 0, "the projection width cannot be negative");
        Check(VocabSize >= 1 && Width >= 1 && Layers >= 1 && Heads >= 1 && MlpWidth >= 1 && MaxPositions >= 1, "every size must be positive");
        Check(Width % Heads == 0, $"width {Width} must be a multiple of the head count {Heads}");
    }

    private static void Check(bool ok, string problem)
    {
        if (!ok) throw new InvalidArgumentException("text encoder config", problem);
    }
}

/// <summary>
/// transformers' CLIPTextModel as optimum exports it: <c>input_ids</c> [batch, sequence] → <c>last_hidden_state</c>
/// [batch, sequence, width] and <c>pooler_output</c> [batch, width]. Token + position embeddings, pre-LayerNorm transformer
/// layers with a causal mask, final LayerNorm; the pooled output is the hidden state at argmax(input_ids), which is the
/// (first) end-of-text token because CLIP gives it the largest id. With a projection (CLIPTextModelWithProjection) the
/// outputs are instead <c>text_embeds</c> [batch, projection] (the projected pooled state), <c>last_hidden_state</c> and
/// <c>hidden_states.{layers}</c>, the last layer's output before the final LayerNorm (what Stable Cascade conditions on as
/// hidden_states[-1]), named as optimum names the hidden states.
/// </summary>
public static class ClipTextModel
{
    /// <summary>Builds the graph, declaring parameters through <paramref name="sink"/> under transformers' names (<c>text_model.…</c>).</summary>
    public static ModelProto Build(ClipTextConfig config, ParameterSink sink, ExportOptions? options = null)
    {
        config.Validate();
        options ??= new ExportOptions();
        var g = new GraphBuilder(options.Opset, "text_encoder");
        var L = new Layers(g, sink);
        var ids = g.Input("input_ids", options.Int64InputIds ? DT.Int64 : DT.Int32, ["batch_size", "sequence_length"]);
        long d = config.Width;

        string hidden;
        string positions;
        using (L.Scope("text_model"))
        {
            using (L.Scope("embeddings"))
            {
                var tokenTable = L.Param("token_embedding.weight", [config.VocabSize, d], ParameterInit.Random, 0.05f);
                var positionTable = L.Param("position_embedding.weight", [config.MaxPositions, d], ParameterInit.Random, 0.05f);
                // position_ids = arange(sequence): the first `sequence` rows of the position table
                var length = g.Squeeze(g.Shape(ids, 1, 2), [0]);
                positions = g.Range(g.Constant(0L), length, g.Constant(1L));
                hidden = g.Add(g.Gather(tokenTable, ids), g.Gather(positionTable, positions));
            }

            var mask = CausalMask(g, positions);
            for (int i = 0; i < config.Layers; i++)
                using (L.Scope($"encoder.layers.{i}"))
                    hidden = EncoderLayer(L, hidden, mask, config);

            if (config.ProjectionDim > 0) hidden = g.Identity(hidden, $"hidden_states.{config.Layers}");
            hidden = L.LayerNorm(hidden, "final_layer_norm", d, config.LayerNormEps);
        }
        g.Identity(hidden, "last_hidden_state");

        // pooled = last_hidden_state[b, argmax(input_ids[b])]; ids cast to float for ArgMax (exact below 2^24)
        var eos = g.Node("ArgMax", [g.Cast(ids, DT.Float)], 1, [Attr.Int("axis", -1), Attr.Int("keepdims", 1)])[0];
        if (config.ProjectionDim > 0)
        {
            var pooled = g.Node("GatherND", ["last_hidden_state", eos], 1, [Attr.Int("batch_dims", 1)])[0];
            var projection = L.Param("text_projection.weight", [config.ProjectionDim, d], ParameterInit.Random, 1f / MathF.Sqrt(d));
            g.Gemm(pooled, projection, transB: true, output: "text_embeds");
            g.Output("text_embeds", DT.Float, ["batch_size", config.ProjectionDim]);
            g.Output("last_hidden_state", DT.Float, ["batch_size", "sequence_length", d]);
            g.Output($"hidden_states.{config.Layers}", DT.Float, ["batch_size", "sequence_length", d]);
            return g.Build();
        }
        g.Node("GatherND", ["last_hidden_state", eos], 1, [Attr.Int("batch_dims", 1)], outputs: ["pooler_output"]);

        g.Output("last_hidden_state", DT.Float, ["batch_size", "sequence_length", d]);
        g.Output("pooler_output", DT.Float, ["batch_size", d]);
        return g.Build();
    }

    /// <summary>The parameters (name, shape) of a config, from a shapes-only build.</summary>
    public static IReadOnlyList<ParameterInfo> Parameters(ClipTextConfig config)
    {
        var sink = new ShapeOnlyParameters();
        Build(config, sink);
        return sink.Declared;
    }

    /// <summary>[S, S] additive mask: 0 where key j ≤ query i, −∞-like (float.MinValue, as transformers uses the dtype's min) where j &gt; i.</summary>
    private static string CausalMask(GraphBuilder g, string positions)
    {
        var future = g.Node("Greater", [g.Unsqueeze(positions, [0]), g.Unsqueeze(positions, [1])])[0];
        return g.Where(future, g.Constant(float.MinValue), g.Constant(0f));
    }

    /// <summary>CLIPEncoderLayer: x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).</summary>
    private static string EncoderLayer(Layers L, string x, string mask, ClipTextConfig c)
    {
        var g = L.G;
        long d = c.Width;
        var h = L.LayerNorm(x, "layer_norm1", d, c.LayerNormEps);
        using (L.Scope("self_attn"))
        {
            var q = L.Linear(h, "q_proj", d, d);
            var k = L.Linear(h, "k_proj", d, d);
            var v = L.Linear(h, "v_proj", d, d);
            h = L.Linear(L.Attention(q, k, v, d, c.Heads, mask), "out_proj", d, d);
        }
        x = g.Add(x, h);

        h = L.LayerNorm(x, "layer_norm2", d, c.LayerNormEps);
        using (L.Scope("mlp"))
        {
            h = L.Linear(h, "fc1", d, c.MlpWidth);
            h = c.Activation == ClipActivation.QuickGelu
                ? g.Mul(h, g.Sigmoid(g.Mul(h, g.Constant(1.702f))))
                : g.Gelu(h);
            h = L.Linear(h, "fc2", c.MlpWidth, d);
        }
        return g.Add(x, h);
    }
}
