using System.Text;
using SkiaSharp;

namespace EdgeDiffusion.Imaging;

/// <summary>
/// Writes PNG files: pixels encoded by SkiaSharp (RGB when every pixel is opaque, RGBA otherwise; zlib level 6, adaptive
/// filters), then text chunks inserted right after IHDR, where tools that read only the start of a file find them.
/// The output depends only on the inputs (no timestamps), so identical inputs give identical bytes.
/// </summary>
public static class PngWriter
{
    /// <summary>The keyword under which Stable Diffusion tools (AUTOMATIC1111, Forge, ...) store how an image was made.</summary>
    public const string ParametersKeyword = "parameters";

    /// <summary>
    /// The PNG bytes of <paramref name="image"/>. When <paramref name="parameters"/> is given, its
    /// <see cref="GenerationParameters.ToParametersText"/> goes first, under <see cref="ParametersKeyword"/>; the
    /// <paramref name="text"/> pairs follow in order. Each pair becomes a tEXt chunk when its text is Latin-1 and an
    /// uncompressed iTXt chunk (UTF-8) otherwise, e.g. for a Japanese prompt. Keywords must be 1–79 Latin-1 characters
    /// without leading, trailing or double spaces, and unique; texts must not contain NUL.
    /// </summary>
    public static byte[] Encode(RgbaImage image, GenerationParameters? parameters = null, IEnumerable<KeyValuePair<string, string>>? text = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        var entries = new List<KeyValuePair<string, string>>();
        if (parameters is not null) entries.Add(new(ParametersKeyword, parameters.ToParametersText()));
        if (text is not null) entries.AddRange(text);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var chunks = new List<(string Type, byte[] Data)>();
        foreach (var (keyword, value) in entries)
        {
            if (!seen.Add(keyword))
                throw new InvalidArgumentException("text", $"keyword '{Printable(keyword)}' is given twice; give each keyword once (the generation parameters use '{ParametersKeyword}')");
            chunks.Add(TextChunk(keyword, value));
        }

        byte[] encoded = EncodePixels(image);
        var parsed = PngChunks.Parse(encoded, "<SkiaSharp PNG encoder output>");
        var ihdr = parsed[0];
        using var output = new MemoryStream(encoded.Length + chunks.Sum(c => c.Data.Length + 12));
        output.Write(encoded, 0, ihdr.Start + ihdr.TotalLength); // signature + IHDR
        foreach (var (type, data) in chunks) PngChunks.Write(output, type, data);
        var iend = parsed[^1];
        output.Write(encoded, ihdr.Start + ihdr.TotalLength, iend.Start + iend.TotalLength - (ihdr.Start + ihdr.TotalLength));
        return output.ToArray();
    }

    /// <summary>
    /// Encodes as <see cref="Encode"/> does and writes the file through a temporary file in the same folder, renamed into
    /// place when complete (an existing file is replaced only then). The folder is created if needed. Failures are
    /// <see cref="ImageException"/>s naming <paramref name="path"/>.
    /// </summary>
    public static void Write(string path, RgbaImage image, GenerationParameters? parameters = null, IEnumerable<KeyValuePair<string, string>>? text = null) =>
        ImageFiles.WriteAllBytes(path, Encode(image, parameters, text));

    private static byte[] EncodePixels(RgbaImage image)
    {
        var alpha = image.IsOpaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul;
        unsafe
        {
            fixed (byte* pixels = image.Pixels)
            {
                using var pixmap = new SKPixmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, alpha), (IntPtr)pixels, image.RowBytes);
                using var data = pixmap.Encode(new SKPngEncoderOptions(SKPngEncoderFilterFlags.AllFilters, 6))
                    ?? throw new InvalidOperationException($"SkiaSharp could not encode a {image.Width}x{image.Height} image as PNG");
                return data.ToArray();
            }
        }
    }

    /// <summary>The type and data of a text chunk: tEXt (Latin-1) when the text allows, else uncompressed iTXt (UTF-8).</summary>
    internal static (string Type, byte[] Data) TextChunk(string keyword, string text)
    {
        ArgumentNullException.ThrowIfNull(keyword);
        ArgumentNullException.ThrowIfNull(text);
        CheckKeyword(keyword);
        if (text.Contains('\0'))
            throw new InvalidArgumentException("text", $"the text for '{keyword}' contains a NUL character, which PNG text chunks cannot hold; remove it");
        bool latin1 = text.All(c => c <= '\u00FF');
        using var data = new MemoryStream();
        data.Write(Encoding.Latin1.GetBytes(keyword));
        data.WriteByte(0);
        if (latin1)
        {
            data.Write(Encoding.Latin1.GetBytes(text));
            return ("tEXt", data.ToArray());
        }
        data.Write([0, 0]);      // not compressed, compression method 0
        data.WriteByte(0);       // no language tag
        data.WriteByte(0);       // no translated keyword
        byte[] utf8;
        try { utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(text); }
        catch (EncoderFallbackException)
        {
            throw new InvalidArgumentException("text", $"the text for '{keyword}' has an unpaired UTF-16 surrogate, which UTF-8 cannot encode; fix the string");
        }
        data.Write(utf8);
        return ("iTXt", data.ToArray());
    }

    private static void CheckKeyword(string keyword)
    {
        string problem =
            keyword.Length is 0 or > 79 ? $"is {keyword.Length} characters long; PNG keywords have 1 to 79" :
            keyword.Any(c => c is < ' ' or > '~' and < '\u00A1' or > '\u00FF') ? "has a character outside printable Latin-1; use letters, digits, punctuation and single spaces" :
            keyword[0] == ' ' || keyword[^1] == ' ' ? "starts or ends with a space; trim it" :
            keyword.Contains("  ", StringComparison.Ordinal) ? "has two spaces in a row; use single spaces" :
            "";
        if (problem.Length > 0)
            throw new InvalidArgumentException("keyword", $"'{Printable(keyword)}' {problem}");
    }

    private static string Printable(string s) =>
        string.Concat(s.Select(c => char.IsControl(c) ? $"\\u{(int)c:X4}" : c.ToString()));
}
