namespace EdgeDiffusion.Text;

/// <summary>
/// A tokenizer file (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json) or folder is missing,
/// corrupt or does not fit the others. The message names the file, the problem and the fix in one line.
/// </summary>
public sealed class TokenizerException : EdgeDiffusionException
{
    public TokenizerException(string file, string problem, Exception? inner = null)
        : base($"{file}: {problem}", inner)
    {
        File = file;
        Problem = problem;
    }

    /// <summary>The file or folder the problem was found in.</summary>
    public string File { get; }

    /// <summary>The problem (and fix), without the file name.</summary>
    public string Problem { get; }
}
