using System.CommandLine;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Cli;

/// <summary>Session settings from the options every model-running verb shares.</summary>
public static class RuntimeOptions
{
    public static SessionSettings Settings(int threads, bool noCache, string? cacheDir, bool sharedAllocator = false,
        DecompressionMode decompression = DecompressionMode.Jit) => SessionSettings.Default with
    {
        IntraOpThreads = threads,
        Decompression = decompression,
        SharedAllocator = sharedAllocator,
        Cache = noCache ? null : new SessionCache(cacheDir ?? SessionCache.DefaultDirectory, message => Console.Error.WriteLine($"warning: {message}")),
    };

    /// <summary>--decompress: when compressed weights become float32.</summary>
    public static Option<DecompressionMode> DecompressOption() => new("--decompress")
    {
        Description = "compressed models only: jit keeps weights compressed in memory and expands each layer when it runs; load expands them once at start (float32 memory and speed)",
        DefaultValueFactory = _ => DecompressionMode.Jit,
    };

    /// <summary>One line saying which sessions came from the cache.</summary>
    public static void ReportCache(SessionSettings settings, TextWriter error)
    {
        if (settings.Cache is not { Outcomes.Count: > 0 } cache) return;
        error.WriteLine("session cache: " + string.Join(", ", cache.Outcomes.Select(o =>
            $"{Path.GetFileName(Path.GetDirectoryName(o.Key))} {o.Value.ToString().ToLowerInvariant()}")) + $" ({cache.Directory})");
    }
}
