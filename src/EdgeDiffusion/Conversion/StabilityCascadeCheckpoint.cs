using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Conversion;

/// <summary>
/// Stable Cascade's original single-file stage checkpoints (Stability's stage_c*.safetensors, stage_b*.safetensors): the
/// diffusers StableCascadeUNet names except that each attention is a torch nn.MultiheadAttention
/// (<c>….attention.attn.in_proj_weight/bias</c>, q, k and v stacked as three row blocks, and <c>….attention.attn.out_proj</c>)
/// and Stage B's pooled-text mapper is <c>clip_mapper</c>. Located here under the diffusers names the builder declares,
/// so every stored tensor is used once (a fused in_proj once per block).
/// </summary>
public static class StabilityCascadeCheckpoint
{
    private const string Fused = ".attention.attn.in_proj_";
    private const string OutProj = ".attention.attn.out_proj.";

    /// <summary>Stage C's or Stage B's single-file layout: a StableCascadeUNet's embedding and pooled-text mapper under either name, and no diffusers component around it.</summary>
    public static bool Is(IReadOnlyCollection<string> names) =>
        names.Contains("embedding.1.weight") && (names.Contains("clip_txt_pooled_mapper.weight") || names.Contains("clip_mapper.weight"));

    /// <summary>The stage the keys are: Stage C (the prior) maps CLIP text tokens, Stage B (the decoder) does not.</summary>
    public static string StageOf(IReadOnlyCollection<string> names) =>
        names.Contains("clip_txt_mapper.weight") ? StableCascadeArchitecture.Prior : StableCascadeArchitecture.Decoder;

    /// <summary>Where the diffusers-named parameter <paramref name="name"/> lies in a checkpoint holding <paramref name="contains"/>'s keys (null: absent).</summary>
    public static TensorLocation? Locate(string name, Func<string, bool> contains)
    {
        foreach (var (projection, part) in new[] { (".attention.to_q.", 0), (".attention.to_k.", 1), (".attention.to_v.", 2) })
        {
            int at = name.IndexOf(projection, StringComparison.Ordinal);
            if (at < 0) continue;
            string fused = name[..at] + Fused + name[(at + projection.Length)..]; // weight or bias
            return contains(fused) ? new TensorLocation(fused, part, 3) : contains(name) ? new TensorLocation(name) : null;
        }
        string key = name.Replace(".attention.to_out.0.", OutProj, StringComparison.Ordinal);
        if (key != name && contains(key)) return new TensorLocation(key);
        if (name.StartsWith("clip_txt_pooled_mapper.", StringComparison.Ordinal) && !contains(name))
        {
            string stageB = "clip_mapper." + name["clip_txt_pooled_mapper.".Length..];
            if (contains(stageB)) return new TensorLocation(stageB);
        }
        return contains(name) ? new TensorLocation(name) : null;
    }
}
