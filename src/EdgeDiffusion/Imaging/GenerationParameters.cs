using System.Globalization;
using System.Text;

namespace EdgeDiffusion.Imaging;

/// <summary>
/// How an image was generated, written into its PNG under the keyword "parameters" in the text format other Stable
/// Diffusion tools (AUTOMATIC1111, Forge, ...) write and read.
/// </summary>
/// <param name="Prompt">The prompt, as given (it may span lines).</param>
/// <param name="NegativePrompt">The negative prompt; null or empty leaves its line out.</param>
/// <param name="Seed">The seed of the initial noise.</param>
/// <param name="Steps">The number of denoising steps.</param>
/// <param name="Scheduler">The scheduler (sampler) name, e.g. "euler".</param>
/// <param name="Guidance">The classifier-free guidance scale.</param>
/// <param name="Width">Image width in pixels.</param>
/// <param name="Height">Image height in pixels.</param>
/// <param name="Model">The model name.</param>
/// <param name="Strength">img2img denoising strength; null for text-to-image.</param>
/// <param name="Noise">The noise source (<c>GenerationRequest.Noise</c>, the CLI's --rng) when not the default edgediff; null leaves it out.</param>
public sealed record GenerationParameters(
    string Prompt,
    string? NegativePrompt,
    long Seed,
    int Steps,
    string Scheduler,
    double Guidance,
    int Width,
    int Height,
    string Model,
    double? Strength = null,
    string? Noise = null)
{
    /// <summary>
    /// The "parameters" text: the prompt, then "Negative prompt: ..." on its own line when there is one, then one line
    /// "Steps: 20, Sampler: euler, CFG scale: 7.5, Seed: 42, Size: 128x128, Model: tiny-shapes" with
    /// ", Denoising strength: 0.75" appended for img2img and ", RNG: torch" for a noise source other than edgediff. Numbers use invariant culture and the shortest form that round-trips
    /// (7 → "7", 7.5 → "7.5"). A sampler or model name holding a comma, colon or line break is written as a JSON string,
    /// as AUTOMATIC1111 does, so readers can still split the line on ", ".
    /// </summary>
    public string ToParametersText()
    {
        var text = new StringBuilder(Prompt);
        if (!string.IsNullOrEmpty(NegativePrompt)) text.Append("\nNegative prompt: ").Append(NegativePrompt);
        text.Append('\n')
            .Append("Steps: ").Append(Format(Steps))
            .Append(", Sampler: ").Append(Quote(Scheduler))
            .Append(", CFG scale: ").Append(Format(Guidance))
            .Append(", Seed: ").Append(Format(Seed))
            .Append(", Size: ").Append(Format(Width)).Append('x').Append(Format(Height))
            .Append(", Model: ").Append(Quote(Model));
        if (Strength is double strength) text.Append(", Denoising strength: ").Append(Format(strength));
        if (!string.IsNullOrEmpty(Noise)) text.Append(", RNG: ").Append(Quote(Noise));
        return text.ToString();
    }

    private static string Format(IFormattable value) => value.ToString(null, CultureInfo.InvariantCulture);

    /// <summary>The value as is, or as a JSON string (non-ASCII kept) when it holds ',', ':' or a line break.</summary>
    internal static string Quote(string value)
    {
        if (value.IndexOfAny([',', ':', '\n', '\r']) < 0) return value;
        var quoted = new StringBuilder("\"");
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': quoted.Append("\\\""); break;
                case '\\': quoted.Append("\\\\"); break;
                case '\n': quoted.Append("\\n"); break;
                case '\r': quoted.Append("\\r"); break;
                case '\t': quoted.Append("\\t"); break;
                case '\b': quoted.Append("\\b"); break;
                case '\f': quoted.Append("\\f"); break;
                default:
                    if (c < ' ') quoted.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else quoted.Append(c);
                    break;
            }
        }
        return quoted.Append('"').ToString();
    }
}
