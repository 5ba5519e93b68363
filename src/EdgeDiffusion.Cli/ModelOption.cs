using System.CommandLine;

namespace EdgeDiffusion.Cli;

/// <summary>The --model option shared by the verbs that run a model folder.</summary>
public static class ModelOption
{
    public static Option<string?> Create(string description = "a diffusers-style ONNX model folder") =>
        new("--model", "-m") { Description = description };

    /// <summary>The folder to use: the option's value, else the default model shipped with edgediff.</summary>
    public static string Resolve(string? value)
    {
        if (!string.IsNullOrWhiteSpace(value)) return value;
        string shipped = DefaultFolder;
        return Directory.Exists(shipped)
            ? shipped
            : throw new InvalidArgumentException("--model", $"missing, and no default model is installed at {shipped}; pass a model folder (e.g. --model models/tiny-random-sd)");
    }

    /// <summary>Where the default model is copied beside the edgediff binaries.</summary>
    public static string DefaultFolder => Path.Combine(AppContext.BaseDirectory, "models", "default");
}
