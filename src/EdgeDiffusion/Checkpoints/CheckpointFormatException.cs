namespace EdgeDiffusion.Checkpoints;

/// <summary>
/// A checkpoint file (a .safetensors file or a sharded checkpoint's index) is missing, corrupt or does not hold what
/// was asked of it. The message names the file and the problem in one line, and says what to do where that is known.
/// </summary>
public sealed class CheckpointFormatException : EdgeDiffusionException
{
    public CheckpointFormatException(string file, string problem, Exception? inner = null)
        : base($"{file}: {problem}", inner)
    {
        File = file;
        Problem = problem;
    }

    /// <summary>The file the problem was found in.</summary>
    public string File { get; }

    /// <summary>The problem, without the file name.</summary>
    public string Problem { get; }
}
