namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Creates schedulers by name (the CLI's --scheduler values), and picks the default one a model's config names.
/// (Not "Schedulers.Create": a class named like its namespace cannot be reached by its short name from EdgeDiffusion.*.)
/// </summary>
public static class SchedulerFactory
{
    /// <summary>The accepted names, in the order they are listed to users.</summary>
    public static IReadOnlyList<string> Names { get; } = ["euler", "euler-a", "ddim", "dpm++2m", "dpm++2m-karras", "lcm", "pndm"];

    /// <summary>
    /// A scheduler by <paramref name="name"/> (case-insensitive) over <paramref name="config"/>. dpm++2m and dpm++2m-karras
    /// set use_karras_sigmas off and on; the others take the config as it is (euler honours its use_karras_sigmas).
    /// </summary>
    public static IScheduler Create(string name, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return (name ?? "").Trim().ToLowerInvariant() switch
        {
            "euler" => new EulerDiscreteScheduler(config),
            "euler-a" => new EulerAncestralDiscreteScheduler(config),
            "ddim" => new DdimScheduler(config),
            "dpm++2m" => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = false }),
            "dpm++2m-karras" => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = true }),
            "lcm" => new LcmScheduler(config),
            "pndm" => new PndmScheduler(config),
            _ => throw new InvalidArgumentException("scheduler", $"\"{name}\" is not a scheduler; use one of {string.Join(", ", Names)}"),
        };
    }

    /// <summary>
    /// The scheduler name matching the config's diffusers <c>_class_name</c>, or null for a class without an equivalent here.
    /// DPMSolverMultistepScheduler maps to dpm++2m-karras when the config asks for Karras sigmas.
    /// </summary>
    public static string? DefaultName(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.ClassName switch
        {
            "EulerDiscreteScheduler" => "euler",
            "EulerAncestralDiscreteScheduler" => "euler-a",
            "DDIMScheduler" => "ddim",
            "DPMSolverMultistepScheduler" => config.UseKarrasSigmas ? "dpm++2m-karras" : "dpm++2m",
            "LCMScheduler" => "lcm",
            "PNDMScheduler" => "pndm",
            _ => null,
        };
    }

    /// <summary>The scheduler the model ships with (see <see cref="DefaultName"/>); a class without an equivalent is an error that lists the names to choose from.</summary>
    public static IScheduler CreateDefault(SchedulerConfig config) =>
        DefaultName(config) is { } name
            ? Create(name, config)
            : throw new InvalidArgumentException("scheduler",
                $"the model's scheduler config names {(config.ClassName is null ? "no _class_name" : $"\"{config.ClassName}\"")}, which has no equivalent here; choose one of {string.Join(", ", Names)}");
}
