namespace EdgeDiffusion.Imaging;

/// <summary>
/// An image file (an init image to read, a PNG to inspect, an output to write) is missing, unreadable, not an image,
/// corrupt, or cannot be written. The message names the file and the problem in one line, and says what to do.
/// </summary>
public sealed class ImageException : EdgeDiffusionException
{
    public ImageException(string file, string problem, Exception? inner = null)
        : base($"{file}: {OneLine(problem)}", inner)
    {
        File = file;
        Problem = OneLine(problem);
    }

    /// <summary>The file the problem is about.</summary>
    public string File { get; }

    /// <summary>The problem and its fix, without the file name.</summary>
    public string Problem { get; }

    // Messages from the OS or a decoder can hold line breaks; the CLI prints one line.
    private static string OneLine(string text) =>
        text.Replace("\r\n", " ", StringComparison.Ordinal).Replace('\n', ' ').Replace('\r', ' ');
}
