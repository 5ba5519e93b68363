namespace EdgeDiffusion.Architectures;

/// <summary>The noise scheduler a model folder names, with the settings its scheduler_config.json carries.</summary>
public enum SchedulerKind
{
    /// <summary>PNDMScheduler, ε-prediction (SD 1.x).</summary>
    Pndm,

    /// <summary>DDIMScheduler, v-prediction (SD 2.1 at 768²).</summary>
    DdimVPrediction,

    /// <summary>EulerDiscreteScheduler, ε-prediction, "trailing" timestep spacing (SD-Turbo).</summary>
    EulerTrailing,
}

/// <summary>A whole Stable Diffusion pipeline's architecture: text encoder, UNet, VAE, scheduler and tokenizer settings.</summary>
public sealed record StableDiffusionConfig(
    string Name,
    ClipTextConfig TextEncoder,
    UNetConfig UNet,
    VaeConfig Vae,
    SchedulerKind Scheduler,
    string PadToken,
    int ImageSize)
{
    /// <summary>CLIP's special tokens (SD 1.x pads with the end-of-text token, SD 2.x with "!").</summary>
    public const string StartOfText = "<|startoftext|>";

    public const string EndOfText = "<|endoftext|>";

    /// <summary>A few-MB test fixture: VAE still ×8 (four levels), two UNet levels, two text layers over the tiny tokenizer's vocabulary.</summary>
    public static StableDiffusionConfig Tiny { get; } = new(
        "tiny",
        new ClipTextConfig(TinyClipTokenizer.VocabSize, 32, 2, 2, 64, 77, ClipActivation.QuickGelu),
        new UNetConfig([32, 64], 1, [2, 2], 32, false, [true, false]),
        new VaeConfig([8, 16, 16, 16], 1, NormGroups: 4),
        SchedulerKind.Pndm, EndOfText, 64);

    /// <summary>Stable Diffusion 1.5 at 512².</summary>
    public static StableDiffusionConfig Sd15 { get; } = new("sd15", ClipTextConfig.VitL14, UNetConfig.Sd15, VaeConfig.Sd, SchedulerKind.Pndm, EndOfText, 512);

    /// <summary>Stable Diffusion 2.1 (v-prediction) at 768².</summary>
    public static StableDiffusionConfig Sd21 { get; } = new("sd21", ClipTextConfig.OpenClipVitH14, UNetConfig.Sd21, VaeConfig.Sd, SchedulerKind.DdimVPrediction, "!", 768);

    /// <summary>SD-Turbo: SD 2.1's architecture distilled for 1–4 steps at 512².</summary>
    public static StableDiffusionConfig SdTurbo { get; } = new("sd-turbo", ClipTextConfig.OpenClipVitH14, UNetConfig.Sd21, VaeConfig.Sd, SchedulerKind.EulerTrailing, "!", 512);

    /// <summary>The presets by name: tiny, sd15, sd21, sd-turbo.</summary>
    public static IReadOnlyList<StableDiffusionConfig> Presets { get; } = [Tiny, Sd15, Sd21, SdTurbo];

    /// <summary>The preset called <paramref name="name"/> (case-insensitive).</summary>
    public static StableDiffusionConfig Preset(string name) =>
        Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new InvalidArgumentException("architecture", $"'{name}' is not known; use one of {string.Join(", ", Presets.Select(p => p.Name))}");

    /// <summary>The latent side at <see cref="ImageSize"/> (the UNet's sample_size).</summary>
    public int LatentSize => ImageSize / Vae.DownscaleFactor;

    internal void Validate()
    {
        TextEncoder.Validate();
        UNet.Validate();
        Vae.Validate();
        if (UNet.CrossAttentionDim != TextEncoder.Width)
            throw new InvalidArgumentException("config", $"the UNet attends to {UNet.CrossAttentionDim}-wide text but the text encoder is {TextEncoder.Width} wide");
        if (UNet.InChannels != Vae.LatentChannels || UNet.OutChannels != Vae.LatentChannels)
            throw new InvalidArgumentException("config", $"the UNet's {UNet.InChannels}→{UNet.OutChannels} channels do not match the VAE's {Vae.LatentChannels} latent channels");
        if (ImageSize < 1 || ImageSize % Vae.DownscaleFactor != 0)
            throw new InvalidArgumentException("config", $"image size {ImageSize} is not a positive multiple of the VAE's factor {Vae.DownscaleFactor}");
    }
}
