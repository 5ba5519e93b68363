namespace EdgeDiffusion;

/// <summary>
/// Base of every error EdgeDiffusion reports about its input (files, arguments, shapes).
/// The message is one line naming what is wrong and, where known, the fix; the CLI prints it and exits non-zero.
/// </summary>
public abstract class EdgeDiffusionException : Exception
{
    protected EdgeDiffusionException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A bad argument or option value: the message names it and the values that are accepted.</summary>
public sealed class InvalidArgumentException : EdgeDiffusionException
{
    public InvalidArgumentException(string argument, string problem)
        : base($"{argument}: {problem}") => Argument = argument;

    public string Argument { get; }
}
