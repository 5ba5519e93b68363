namespace EdgeDiffusion.Conversion;

/// <summary>What kind of problem stopped a conversion.</summary>
public enum ConversionProblem
{
    /// <summary>The architecture declares parameters the checkpoint does not hold.</summary>
    MissingKeys,

    /// <summary>The checkpoint holds tensors no built graph used.</summary>
    UnusedKeys,

    /// <summary>A tensor's shape differs from the shape the architecture declares under its name.</summary>
    ShapeMismatch,

    /// <summary>A config.json value the converter does not support (or cannot read).</summary>
    UnsupportedConfig,

    /// <summary>A component folder, config or weights file is missing.</summary>
    MissingComponent,

    /// <summary>The converted shapes differ from the preset asked for with --arch.</summary>
    ArchitectureMismatch,

    /// <summary>A single-file checkpoint whose keys are not a Stable Diffusion 1.x/2.x layout the converter knows.</summary>
    UnknownArchitecture,

    /// <summary>A source layout or option not supported (yet).</summary>
    NotSupported,
}

/// <summary>
/// A checkpoint could not be converted: one line naming the file, the problem and, for key problems, the first few keys.
/// </summary>
public sealed class ConversionException : EdgeDiffusionException
{
    public ConversionException(ConversionProblem problem, string file, string message, IReadOnlyList<string>? keys = null)
        : base($"{file}: {message}")
    {
        Problem = problem;
        File = file;
        Keys = keys ?? [];
    }

    public ConversionProblem Problem { get; }

    /// <summary>The file (or folder) the problem was found in.</summary>
    public string File { get; }

    /// <summary>The keys concerned (all of them, though the message lists only the first few).</summary>
    public IReadOnlyList<string> Keys { get; }

    /// <summary>"a, b, c and 12 more".</summary>
    internal static string List(IReadOnlyList<string> keys, int first = 5) =>
        keys.Count <= first ? string.Join(", ", keys) : $"{string.Join(", ", keys.Take(first))} and {keys.Count - first} more";
}
