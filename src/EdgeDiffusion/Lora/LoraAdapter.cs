using System.Globalization;
using EdgeDiffusion.Checkpoints;

namespace EdgeDiffusion.Lora;

/// <summary>
/// One low-rank update of one weight: ΔW = (alpha / rank) · up @ down, W in PyTorch's layout [out, in] (convolutions:
/// down [rank, in, kh, kw], up [out, rank, 1, 1]). <see cref="Target"/> is the module path with '.' written as '_'
/// (kohya's spelling; PEFT's dotted paths are normalized to it), <see cref="Component"/> unet or text_encoder.
/// </summary>
public sealed record LoraLayer(string Component, string Target, string Key, float[] Down, long[] DownShape, float[] Up, long[] UpShape, float Alpha)
{
    public int Rank => (int)DownShape[0];

    /// <summary>alpha / rank, the factor the product is scaled by before the user's multiplier.</summary>
    public float Scale => Alpha / Rank;
}

/// <summary>
/// A LoRA file (safetensors) in either common layout: kohya / A1111 (<c>lora_unet_…​.lora_down.weight</c>,
/// <c>.lora_up.weight</c>, <c>.alpha</c>; <c>lora_te_</c> / <c>lora_te1_</c> for the text encoder) or diffusers / PEFT
/// (<c>unet.….lora_A.weight</c> = down, <c>.lora_B.weight</c> = up, alpha from <c>.alpha</c> keys or the
/// <c>lora_alpha</c> metadata, else the rank), with the multiplier it is applied at.
/// </summary>
public sealed class LoraAdapter
{
    private LoraAdapter(string path, float multiplier, string format, IReadOnlyList<LoraLayer> layers)
    {
        Path = path;
        Multiplier = multiplier;
        Format = format;
        Layers = layers;
    }

    public string Path { get; }

    public float Multiplier { get; }

    /// <summary>kohya or peft.</summary>
    public string Format { get; }

    public IReadOnlyList<LoraLayer> Layers { get; }

    /// <summary>"FILE" or "FILE:SCALE" (the CLI's --lora); a bad scale names --lora.</summary>
    public static LoraAdapter Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        int colon = spec.LastIndexOf(':');
        float multiplier = 1f;
        string path = spec;
        if (colon > 0 && !File.Exists(spec))
        {
            string scale = spec[(colon + 1)..];
            if (!float.TryParse(scale, NumberStyles.Float, CultureInfo.InvariantCulture, out multiplier) || !float.IsFinite(multiplier))
                throw new InvalidArgumentException("--lora", $"\"{spec}\": '{scale}' is not a number; write FILE or FILE:SCALE, e.g. pink.safetensors:0.8");
            path = spec[..colon];
        }
        return Load(path, multiplier);
    }

    public static LoraAdapter Load(string path, float multiplier = 1f)
    {
        if (!File.Exists(path)) throw new InvalidArgumentException("--lora", $"{path}: file not found; give a LoRA .safetensors file (FILE or FILE:SCALE)");
        using var checkpoint = SafetensorsCheckpoint.Open(path);
        var names = checkpoint.Names.ToHashSet(StringComparer.Ordinal);
        bool kohya = names.Any(n => n.EndsWith(".lora_down.weight", StringComparison.Ordinal));
        bool peft = names.Any(n => n.Contains(".lora_A.", StringComparison.Ordinal));
        if (!kohya && !peft)
            throw new CheckpointFormatException(path, "holds no LoRA weights (no *.lora_down.weight / *.lora_up.weight or *.lora_A / *.lora_B keys); it is not a LoRA file");
        double? metadataAlpha = checkpoint.Metadata.TryGetValue("lora_alpha", out var a) && double.TryParse(a, CultureInfo.InvariantCulture, out double av) ? av : null;
        var layers = new List<LoraLayer>();
        foreach (var down in checkpoint.Names.Where(n => kohya ? n.EndsWith(".lora_down.weight", StringComparison.Ordinal) : n.Contains(".lora_A.", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            string stem, up, component, target;
            if (kohya)
            {
                stem = down[..^".lora_down.weight".Length];
                up = stem + ".lora_up.weight";
                (component, target) = KohyaTarget(path, stem);
            }
            else
            {
                stem = down[..down.IndexOf(".lora_A.", StringComparison.Ordinal)];
                up = down.Replace(".lora_A.", ".lora_B.", StringComparison.Ordinal);
                (component, target) = PeftTarget(path, stem);
            }
            if (!names.Contains(up)) throw new CheckpointFormatException(path, $"{down} has no matching {up}; the file is incomplete");
            var downInfo = checkpoint.Get(down);
            var upInfo = checkpoint.Get(up);
            long[] downShape = [.. downInfo.Shape], upShape = [.. upInfo.Shape];
            if (downShape.Length is not (2 or 4) || upShape.Length != downShape.Length || upShape[1] != downShape[0])
                throw new CheckpointFormatException(path, $"{stem}: down [{string.Join(",", downShape)}] and up [{string.Join(",", upShape)}] are not a low-rank pair (up must be [out, rank] for down [rank, in])");
            float alpha = names.Contains(stem + ".alpha") ? checkpoint.ReadFloat32(stem + ".alpha")[0] : (float)(metadataAlpha ?? downShape[0]);
            layers.Add(new LoraLayer(component, target, stem, checkpoint.ReadFloat32(down), downShape, checkpoint.ReadFloat32(up), upShape, alpha));
        }
        return new LoraAdapter(System.IO.Path.GetFullPath(path), multiplier, kohya ? "kohya" : "peft", layers);
    }

    private static (string Component, string Target) KohyaTarget(string path, string stem)
    {
        foreach (var (prefix, component) in new[] { ("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te_", "text_encoder") })
            if (stem.StartsWith(prefix, StringComparison.Ordinal)) return (component, stem[prefix.Length..]);
        if (stem.StartsWith("lora_te2_", StringComparison.Ordinal))
            throw new CheckpointFormatException(path, $"{stem} targets a second text encoder (SDXL); this model has one");
        throw new CheckpointFormatException(path, $"{stem}: a kohya key must start with lora_unet_ or lora_te_");
    }

    private static (string Component, string Target) PeftTarget(string path, string stem)
    {
        string s = stem.Replace("base_model.model.", "", StringComparison.Ordinal);
        foreach (var (prefix, component) in new[] { ("unet.", "unet"), ("text_encoder.", "text_encoder") })
            if (s.StartsWith(prefix, StringComparison.Ordinal)) return (component, s[prefix.Length..].Replace('.', '_'));
        throw new CheckpointFormatException(path, $"{stem}: a diffusers/PEFT key must start with unet. or text_encoder.");
    }
}
