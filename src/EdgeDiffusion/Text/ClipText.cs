using System.Globalization;
using System.Net;
using System.Text;

namespace EdgeDiffusion.Text;

/// <summary>
/// CLIP's prompt clean-up and pre-tokenizer split, written against the reference (Python) behaviour:
/// NFC, HTML-unescape twice, white space collapsed to one space and stripped, Python-style lower-casing,
/// then the CLIP pattern <c>&lt;|startoftext|&gt;|&lt;|endoftext|&gt;|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+</c>
/// matched on code points (so letters outside the BMP group like the reference's, which a UTF-16 regex would not do).
/// NFC (which CLIP's ftfy and transformers apply) needs .NET's ICU globalization: in an app built with
/// InvariantGlobalization, .NET leaves the text as it is, so only decomposed (NFD) input can tokenize differently there.
/// </summary>
internal static class ClipText
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The prompt as the tokenizer splits it.</summary>
    public static string Normalize(string prompt)
    {
        string text = ReplaceLoneSurrogates(prompt);
        if (!text.IsNormalized(NormalizationForm.FormC)) text = text.Normalize(NormalizationForm.FormC);
        text = WebUtility.HtmlDecode(WebUtility.HtmlDecode(text)); // CLIP's basic_clean unescapes twice
        return PythonLower(CollapseWhiteSpace(text));
    }

    /// <summary>
    /// Python's str.isspace, which CLIP's <c>strip()</c> uses: Unicode White_Space plus U+001C..U+001F.
    /// The <c>\s</c> of the <c>regex</c> module, used for collapsing and splitting, is White_Space alone (.NET's char.IsWhiteSpace).
    /// </summary>
    private static bool IsStrippable(char c) => char.IsWhiteSpace(c) || (c >= '\u001C' && c <= '\u001F');

    private static string ReplaceLoneSurrogates(string text)
    {
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            bool lone = char.IsHighSurrogate(c) ? !(i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) : char.IsLowSurrogate(c);
            if (char.IsHighSurrogate(c) && !lone)
            {
                sb?.Append(c).Append(text[i + 1]);
                i++;
                continue;
            }
            if (lone) (sb ??= new StringBuilder(text, 0, i, text.Length)).Append('\uFFFD');
            else sb?.Append(c);
        }
        return sb?.ToString() ?? text;
    }

    // re.sub(r"\s+", " ", text).strip(): runs of white space become one space, then both ends are stripped
    private static string CollapseWhiteSpace(string text)
    {
        int start = 0, end = text.Length;
        while (start < end && IsStrippable(text[start])) start++;
        while (end > start && IsStrippable(text[end - 1])) end--;
        var sb = new StringBuilder(end - start);
        for (int i = start; i < end; i++)
        {
            if (!char.IsWhiteSpace(text[i])) sb.Append(text[i]);
            else if (!char.IsWhiteSpace(text[i - 1])) sb.Append(' '); // text[start] is not white space, so i > start here
        }
        return sb.ToString();
    }

    /// <summary>
    /// Python's str.lower(): simple lower-case mapping per code point, except U+0130 (İ → i + U+0307)
    /// and capital sigma, which becomes final ς at the end of a word.
    /// </summary>
    private static string PythonLower(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune rune, out int used);
            if (rune.Value == 0x130) sb.Append("i\u0307");
            else if (rune.Value == 0x3A3) sb.Append(IsFinalSigma(text, i) ? '\u03C2' : '\u03C3');
            else sb.Append(Rune.ToLowerInvariant(rune).ToString());
            i += used;
        }
        return sb.ToString();
    }

    // Unicode's Final_Sigma condition: a cased letter before (skipping case-ignorables) and none after.
    private static bool IsFinalSigma(string text, int index)
    {
        int i = index;
        bool casedBefore = false;
        while (i > 0)
        {
            Rune.DecodeLastFromUtf16(text.AsSpan(0, i), out Rune r, out int used);
            i -= used;
            if (IsCaseIgnorable(r)) continue;
            casedBefore = IsCased(r);
            break;
        }
        if (!casedBefore) return false;
        for (i = index + 1; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            i += used;
            if (IsCaseIgnorable(r)) continue;
            return !IsCased(r);
        }
        return true;
    }

    private static bool IsCased(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(Rune r) =>
        Rune.GetUnicodeCategory(r) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format
            or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
        || r.Value is '\'' or '.' or ':' or 0xB7 or 0x2018 or 0x2019 or 0x2024 or 0x2027;

    /// <summary>A piece of the normalised prompt that is BPE-encoded on its own.</summary>
    public readonly record struct Piece(int Start, int Length);

    /// <summary>The CLIP pattern's matches, in order; white space between them is skipped.</summary>
    public static List<Piece> Split(string text)
    {
        var pieces = new List<Piece>();
        int i = 0;
        while (i < text.Length)
        {
            ReadOnlySpan<char> rest = text.AsSpan(i);
            int length;
            if (rest.StartsWith(StartOfText, StringComparison.Ordinal)) length = StartOfText.Length;
            else if (rest.StartsWith(EndOfText, StringComparison.Ordinal)) length = EndOfText.Length;
            else if ((length = ContractionLength(rest)) > 0) { }
            else
            {
                Rune.DecodeFromUtf16(rest, out Rune first, out int used);
                CharClass cls = Classify(first);
                if (cls == CharClass.Space)
                {
                    i += used;
                    continue;
                }
                length = used;
                if (cls != CharClass.Number) // \p{N} matches one at a time; letters and other symbols run on
                {
                    while (length < rest.Length)
                    {
                        Rune.DecodeFromUtf16(rest[length..], out Rune next, out int n);
                        if (Classify(next) != cls) break;
                        length += n;
                    }
                }
            }
            pieces.Add(new Piece(i, length));
            i += length;
        }
        return pieces;
    }

    private static int ContractionLength(ReadOnlySpan<char> s)
    {
        if (s.Length < 2 || s[0] != '\'') return 0;
        switch (s[1])
        {
            case 's' or 't' or 'm' or 'd': return 2;
            case 'r' when s.Length > 2 && s[2] == 'e': return 3;
            case 'v' when s.Length > 2 && s[2] == 'e': return 3;
            case 'l' when s.Length > 2 && s[2] == 'l': return 3;
            default: return 0;
        }
    }

    private enum CharClass { Space, Letter, Number, Other }

    private static CharClass Classify(Rune r)
    {
        if (r.IsBmp && char.IsWhiteSpace((char)r.Value)) return CharClass.Space;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClass.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClass.Number,
            _ => CharClass.Other,
        };
    }
}
