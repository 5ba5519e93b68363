using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// The PyTorch modules the Stable Diffusion family is made of, as ONNX subgraphs whose parameters are declared through a
/// <see cref="ParameterSink"/> under the name PyTorch gives them (the builder's scope path + "weight"/"bias") and in
/// PyTorch's layout ([out, in] for Linear, [out, in, kh, kw] for Conv2d), so real checkpoints map on by name and shape.
/// Random weights use PyTorch's default bound U(±1/√fan_in) for Linear/Conv2d, which keeps activations of a deep random
/// network finite; norms start at scale 1, shift 0.
/// </summary>
internal sealed class Layers(GraphBuilder g, ParameterSink sink)
{
    public GraphBuilder G { get; } = g;

    public ParameterSink Sink { get; } = sink;

    /// <summary>Scopes the builder to a module path; use as <c>using (L.Scope("down_blocks.0"))</c>.</summary>
    public IDisposable Scope(string name) => G.Scope(name);

    public string Param(string local, long[] shape, ParameterInit init, float scale = 0f) =>
        Sink.Declare(G, new ParameterInfo(G.Name(local), shape, init, scale));

    private string Uniform(string local, long[] shape, long fanIn) => Param(local, shape, ParameterInit.Random, 1f / MathF.Sqrt(fanIn));

    /// <summary>
    /// nn.Linear over the last axis of x (any rank ≥ 2). The weight stays [out, in] under its PyTorch name, so the product
    /// is a Gemm with transB on x flattened to 2-D, reshaped back to x's leading dimensions.
    /// </summary>
    public string Linear(string x, string module, long inFeatures, long outFeatures, bool bias = true, bool input2D = false)
    {
        using var _ = Scope(module);
        var w = Uniform("weight", [outFeatures, inFeatures], inFeatures);
        var b = bias ? Uniform("bias", [outFeatures], inFeatures) : null;
        if (input2D) return G.Gemm(x, w, b, transB: true);
        var flat = G.Reshape(x, [-1, inFeatures]);
        var y = G.Gemm(flat, w, b, transB: true);
        var shape = G.Concat([G.Shape(x, 0, -1), G.Constant([outFeatures])], 0);
        return G.Reshape(y, shape);
    }

    /// <summary>nn.Conv2d with square kernel; <paramref name="pads"/> as ONNX orders them (begins, then ends), default "same" for odd kernels.</summary>
    public string Conv2d(string x, string module, long inChannels, long outChannels, long kernel, long stride = 1, long[]? pads = null)
    {
        using var _ = Scope(module);
        long fanIn = inChannels * kernel * kernel;
        var w = Uniform("weight", [outChannels, inChannels, kernel, kernel], fanIn);
        var b = Uniform("bias", [outChannels], fanIn);
        long p = kernel / 2;
        return G.Conv(x, w, b, strides: stride == 1 ? null : [stride, stride], pads: pads ?? (p == 0 ? null : [p, p, p, p]));
    }

    /// <summary>nn.GroupNorm (affine) on [N, C, …spatial].</summary>
    public string GroupNorm(string x, string module, long channels, long groups, float eps, int spatialRank = 2)
    {
        using var _ = Scope(module);
        var gamma = Param("weight", [channels], ParameterInit.Ones);
        var beta = Param("bias", [channels], ParameterInit.Zeros);
        return G.GroupNorm(x, gamma, beta, groups, eps, spatialRank);
    }

    /// <summary>nn.LayerNorm over the last axis.</summary>
    public string LayerNorm(string x, string module, long width, float eps)
    {
        using var _ = Scope(module);
        var gamma = Param("weight", [width], ParameterInit.Ones);
        var beta = Param("bias", [width], ParameterInit.Zeros);
        return G.LayerNormalization(x, gamma, beta, -1, eps);
    }

    /// <summary>
    /// Scaled dot-product attention of q [B, Sq, C] over k, v [B, Sk, C] split into <paramref name="heads"/> heads:
    /// softmax(q·kᵀ/√d + mask)·v, heads joined back to [B, Sq, C]. <paramref name="mask"/> is added to the scores
    /// (broadcast to [B, heads, Sq, Sk]).
    /// </summary>
    public string Attention(string q, string k, string v, long width, long heads, string? mask = null)
    {
        long headDim = width / heads;
        var qh = G.Transpose(G.Reshape(q, [0, 0, heads, headDim]), [0, 2, 1, 3]);
        var kt = G.Transpose(G.Reshape(k, [0, 0, heads, headDim]), [0, 2, 3, 1]);
        var vh = G.Transpose(G.Reshape(v, [0, 0, heads, headDim]), [0, 2, 1, 3]);
        var scores = G.Mul(G.MatMul(qh, kt), G.Constant(1f / MathF.Sqrt(headDim)));
        if (mask is not null) scores = G.Add(scores, mask);
        var context = G.MatMul(G.Softmax(scores, -1), vh);
        return G.Reshape(G.Transpose(context, [0, 2, 1, 3]), [0, 0, width]);
    }

    /// <summary>[N, C, H, W] → [N, H·W, C]: spatial positions as a token sequence.</summary>
    public string ToTokens(string x, long channels) => G.Reshape(G.Transpose(x, [0, 2, 3, 1]), [0, -1, channels]);

    /// <summary>[N, H·W, C] → the [N, C, H, W] shape of <paramref name="like"/>.</summary>
    public string FromTokens(string tokens, string like) => G.Reshape(G.Transpose(tokens, [0, 2, 1]), G.Shape(like));

    /// <summary>
    /// diffusers ResnetBlock2D: GroupNorm → SiLU → conv1 (+ time_emb_proj(SiLU(temb)) per channel) → GroupNorm → SiLU →
    /// conv2, added to the input (through a 1×1 conv_shortcut when the channel count changes). Dropout is identity at inference.
    /// </summary>
    public string ResnetBlock2D(string x, string module, long inChannels, long outChannels, long groups, float eps,
        string? temb = null, long tembChannels = 0)
    {
        using var _ = Scope(module);
        var h = G.SiLU(GroupNorm(x, "norm1", inChannels, groups, eps));
        h = Conv2d(h, "conv1", inChannels, outChannels, 3);
        if (temb is not null)
        {
            var t = Linear(G.SiLU(temb), "time_emb_proj", tembChannels, outChannels, input2D: true);
            h = G.Add(h, G.Unsqueeze(t, [2, 3]));
        }
        h = G.SiLU(GroupNorm(h, "norm2", outChannels, groups, eps));
        h = Conv2d(h, "conv2", outChannels, outChannels, 3);
        var shortcut = inChannels == outChannels ? x : Conv2d(x, "conv_shortcut", inChannels, outChannels, 1);
        return G.Add(shortcut, h);
    }

    /// <summary>
    /// diffusers Downsample2D with a conv: 3×3 stride 2, padded 1 on every side (UNet), or, when <paramref name="asymmetricPad"/>,
    /// padded only at the bottom and right as the VAE encoder's F.pad(x, (0, 1, 0, 1)) with a padding-0 conv does.
    /// </summary>
    public string Downsample2D(string x, string module, long channels, bool asymmetricPad = false)
    {
        using var _ = Scope(module);
        return Conv2d(x, "conv", channels, channels, 3, 2, asymmetricPad ? [0, 0, 1, 1] : [1, 1, 1, 1]);
    }

    /// <summary>diffusers Upsample2D with a conv: nearest-neighbour ×2, then 3×3 conv.</summary>
    public string Upsample2D(string x, string module, long channels)
    {
        using var _ = Scope(module);
        return Conv2d(G.UpsampleNearest(x, 2f), "conv", channels, channels, 3);
    }
}
