using System.CommandLine;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Cli;

/// <summary>The --model option shared by the verbs that run a model folder.</summary>
public static class ModelOption
{
    /// <summary>What --help says about the default.</summary>
    public const string DefaultDescription = "default: models/tiny-shapes, shipped beside edgediff: 64×64 shapes and colours, guidance 3";

    public static Option<string?> Create(string description = "a diffusers-style ONNX model folder") =>
        new("--model", "-m") { Description = $"{description} ({DefaultDescription})" };

    /// <summary>The folder to use: the option's value, else the default model shipped with edgediff (<see cref="StableDiffusionPipeline.DefaultModel"/>).</summary>
    public static string Resolve(string? value)
    {
        if (!string.IsNullOrWhiteSpace(value)) return value;
        try
        {
            return StableDiffusionPipeline.DefaultModel;
        }
        catch (ModelFolderException)
        {
            throw new InvalidArgumentException("--model", $"missing, and no default model is installed at {DefaultFolder}; pass a model folder (e.g. --model models/tiny-random-sd)");
        }
    }

    /// <summary>Where the default model is copied beside the edgediff binaries.</summary>
    public static string DefaultFolder => Path.Combine(AppContext.BaseDirectory, "models", StableDiffusionPipeline.DefaultModelName);
}
