namespace EdgeDiffusion.Schedulers;

/// <summary>
/// A scheduler configuration (diffusers' <c>scheduler/scheduler_config.json</c>, or one built in code) holds a value
/// EdgeDiffusion cannot use. The one-line message names the file, the key, the problem and the accepted values.
/// </summary>
public sealed class SchedulerConfigException : EdgeDiffusionException
{
    public SchedulerConfigException(string file, string? key, string problem, Exception? inner = null)
        : base(key is null ? $"{file}: {problem}" : $"{file}: \"{key}\" {problem}", inner)
    {
        File = file;
        Key = key;
        Problem = problem;
    }

    /// <summary>The file the value came from (or "SchedulerConfig" for a configuration built in code).</summary>
    public string File { get; }

    /// <summary>The JSON key at fault; null when the problem is the file as a whole.</summary>
    public string? Key { get; }

    /// <summary>The problem, without the file and key.</summary>
    public string Problem { get; }
}
