using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>How EdgeDiffusion creates ONNX Runtime sessions. Defaults suit a CPU-only desktop; the CLI maps its options here.</summary>
public sealed record SessionSettings
{
    public static SessionSettings Default { get; } = new();

    /// <summary>Threads for one operator; 0 lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>When set, ONNX Runtime writes a JSON trace with this prefix (see the profile verb).</summary>
    public string? ProfilePrefix { get; init; }

    /// <summary>Extra session config entries (key = value), applied last.</summary>
    public IReadOnlyDictionary<string, string> ConfigEntries { get; init; } = new Dictionary<string, string>();
}

/// <summary>Creates ONNX Runtime sessions from model files, with ONNX Runtime's failures turned into typed errors naming the file.</summary>
public static class SessionFactory
{
    public static InferenceSession Create(string modelPath, SessionSettings? settings = null)
    {
        settings ??= SessionSettings.Default;
        if (!File.Exists(modelPath))
            throw new Onnx.OnnxFormatException(modelPath, "file not found; check the model folder");
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = settings.OptimizationLevel,
            IntraOpNumThreads = settings.IntraOpThreads,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (settings.ProfilePrefix is not null)
        {
            options.EnableProfiling = true;
            options.ProfileOutputPathPrefix = settings.ProfilePrefix;
        }
        foreach (var (key, value) in settings.ConfigEntries) options.AddSessionConfigEntry(key, value);
        try
        {
            return new InferenceSession(modelPath, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new Onnx.OnnxFormatException(modelPath, $"ONNX Runtime cannot load it: {e.Message.Split('\n')[0]}", e);
        }
    }
}
