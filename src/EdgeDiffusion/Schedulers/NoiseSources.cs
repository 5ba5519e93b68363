namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Noise sources by name (the CLI's --rng values; <c>GenerationRequest.Noise</c>):
/// <c>edgediff</c> (the default, <see cref="GaussianNoise"/>: the same bytes on every platform),
/// <c>torch</c> (<see cref="TorchNoise"/>: torch.randn on the CPU with a torch.Generator seeded the same way, as diffusers
/// draws its initial latents on the CPU) and <c>numpy</c> (<see cref="NumpyNoise"/>: np.random.RandomState's standard_normal).
/// </summary>
public static class NoiseSources
{
    public const string Default = "edgediff";

    /// <summary>The accepted names, in the order they are listed to users.</summary>
    public static IReadOnlyList<string> Names { get; } = [Default, "torch", "numpy"];

    /// <summary>Whether <paramref name="name"/> (case-insensitive, trimmed) is one of <see cref="Names"/>.</summary>
    public static bool IsKnown(string? name) => name is not null && Names.Contains(Normalize(name));

    /// <summary>
    /// A new source for <paramref name="seed"/>. Unknown names are an <see cref="InvalidArgumentException"/> listing the
    /// names; numpy rejects seeds above 2³² − 1 (<see cref="ArgumentOutOfRangeException"/>), as numpy does.
    /// </summary>
    public static INoiseSource Create(string name, ulong seed) => Normalize(name) switch
    {
        "edgediff" => new GaussianNoise(seed),
        "torch" => new TorchNoise(seed),
        "numpy" => new NumpyNoise(seed),
        _ => throw new InvalidArgumentException("rng", $"\"{name}\" is not a noise source; use one of {string.Join(", ", Names)}"),
    };

    private static string Normalize(string? name) => (name ?? "").Trim().ToLowerInvariant();
}
