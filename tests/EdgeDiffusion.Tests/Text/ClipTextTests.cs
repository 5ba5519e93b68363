using EdgeDiffusion.Text;

namespace EdgeDiffusion.Tests.Text;

/// <summary>Normalisation and splitting against what CLIP's Python code does (expected values taken from Python 3's str.lower, html.unescape and the regex module).</summary>
public class ClipTextTests
{
    [Theory]
    [InlineData("A Photo Of A CAT", "a photo of a cat")]
    [InlineData("  lots   of\tspaces \r\n here  ", "lots of spaces here")]
    [InlineData("Tom &amp;amp; Jerry &lt;3", "tom & jerry <3")]
    [InlineData("ΟΔΟΣ ΣΑΣ ΑΣ.Β", "οδος σας ασ.β")] // final sigma only at a word's end
    [InlineData("ΆΣ", "άς")]
    [InlineData("İSTANBUL", "i\u0307stanbul")] // Python's full lower-case mapping of U+0130
    [InlineData("\U00010400BC", "\U00010428bc")] // Deseret: outside the BMP
    [InlineData("a\u3000\u2028 b\u00A0c", "a b c")]
    [InlineData(" \u001C a \u001C  b\u001F ", "a \u001C b")] // str.strip() takes U+001C..1F, the regex \s does not
    public void Normalize_matches_clip(string prompt, string expected) =>
        Assert.Equal(expected, ClipText.Normalize(prompt));

    [Theory]
    [InlineData("it's a dog's", "it¦'s¦a¦dog¦'s")]
    [InlineData("!!'s 'll'd 're've 'x", "!!'¦s¦'ll¦'d¦'re¦'ve¦'¦x")]
    [InlineData("f/1.8, 85mm", "f¦/¦1¦.¦8¦,¦8¦5¦mm")]
    [InlineData("½² abc123", "½¦²¦abc¦1¦2¦3")]
    [InlineData("a<|endoftext|>b <|startoftext|>", "a¦<|endoftext|>¦b¦<|startoftext|>")]
    [InlineData("x!<|endoftext|>", "x¦!<|¦endoftext¦|>")] // a symbol run swallows "<|": no special token, as in the reference
    [InlineData("\U00010428bc \U0001D400\U0001D401 \U00020000\U00020001x", "\U00010428bc¦\U0001D400\U0001D401¦\U00020000\U00020001x")]
    [InlineData("🚀🚀 🏳️‍🌈", "🚀🚀¦🏳️‍🌈")]
    [InlineData("", "")]
    public void Split_follows_the_clip_pattern_on_code_points(string text, string expected)
    {
        var pieces = ClipText.Split(text).Select(p => text.Substring(p.Start, p.Length));
        Assert.Equal(expected, string.Join("¦", pieces));
    }
}
