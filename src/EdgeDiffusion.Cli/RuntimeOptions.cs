using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Cli;

/// <summary>Session settings from the options every model-running verb shares.</summary>
public static class RuntimeOptions
{
    public static SessionSettings Settings(int threads, bool noCache, string? cacheDir, bool sharedAllocator = false) => SessionSettings.Default with
    {
        IntraOpThreads = threads,
        SharedAllocator = sharedAllocator,
        Cache = noCache ? null : new SessionCache(cacheDir ?? SessionCache.DefaultDirectory, message => Console.Error.WriteLine($"warning: {message}")),
    };

    /// <summary>One line saying which sessions came from the cache.</summary>
    public static void ReportCache(SessionSettings settings, TextWriter error)
    {
        if (settings.Cache is not { Outcomes.Count: > 0 } cache) return;
        error.WriteLine("session cache: " + string.Join(", ", cache.Outcomes.Select(o =>
            $"{Path.GetFileName(Path.GetDirectoryName(o.Key))} {o.Value.ToString().ToLowerInvariant()}")) + $" ({cache.Directory})");
    }
}
