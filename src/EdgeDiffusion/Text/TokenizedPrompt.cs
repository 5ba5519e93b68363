namespace EdgeDiffusion.Text;

/// <summary>A prompt as the CLIP text encoder sees it: ids padded to the tokenizer's maximum length, plus what was cut.</summary>
public sealed class TokenizedPrompt
{
    internal TokenizedPrompt(int[] ids, IReadOnlyList<string> tokens, int untruncatedLength, string? firstDroppedWord)
    {
        Ids = ids;
        Tokens = tokens;
        UntruncatedLength = untruncatedLength;
        FirstDroppedWord = firstDroppedWord;
    }

    /// <summary>Token ids padded with the pad id to <see cref="ClipTokenizer.MaxLength"/>: the text encoder's input_ids.</summary>
    public int[] Ids { get; }

    /// <summary>The vocabulary strings of the unpadded tokens, BOS and EOS included (e.g. <c>photo&lt;/w&gt;</c>).</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>Number of tokens before padding, BOS and EOS included (at most the maximum length).</summary>
    public int Length => Tokens.Count;

    /// <summary>Number of tokens the whole prompt needs, BOS and EOS included; more than <see cref="Length"/> when truncated.</summary>
    public int UntruncatedLength { get; }

    /// <summary>True when the prompt needed more tokens than fit and its tail was dropped.</summary>
    public bool Truncated => UntruncatedLength > Length;

    /// <summary>The first white-space separated word of the normalised prompt that lost tokens to truncation; null when nothing was cut.</summary>
    public string? FirstDroppedWord { get; }
}
