namespace EdgeDiffusion.Pipelines;

/// <summary>What to generate. Defaults follow common SD front ends.</summary>
public sealed record GenerationRequest
{
    public required string Prompt { get; init; }

    public string NegativePrompt { get; init; } = "";

    public int Steps { get; init; } = 20;

    /// <summary>Classifier-free guidance scale; at or below 1 the unconditional pass is skipped.</summary>
    public double Guidance { get; init; } = DefaultGuidance;

    /// <summary>Stable Diffusion's usual classifier-free guidance scale, for models that recommend none.</summary>
    public const double DefaultGuidance = 7.5;

    /// <summary>Scheduler name (see SchedulerFactory.Names); null uses the model's own.</summary>
    public string? Scheduler { get; init; }

    /// <summary>Image i of the batch uses seed + i, so it equals a single generation with that seed.</summary>
    public ulong Seed { get; init; }

    /// <summary>
    /// The noise source by name (<see cref="Schedulers.NoiseSources.Names"/>; the CLI's --rng): <c>edgediff</c> (the default,
    /// the same bytes on every platform), <c>torch</c> (torch.randn on the CPU with torch.Generator().manual_seed(seed)) or
    /// <c>numpy</c> (np.random.RandomState(seed).standard_normal, seeds up to 2³² − 1). Image i of a batch has its own
    /// generator seeded <c>Seed + i</c> and its own latents, drawn as one randn of [1, 4, H/8, W/8]; diffusers draws a
    /// batch's latents as one randn of [batch, 4, H/8, W/8] from one generator, so the initial latents of <c>torch</c>
    /// equal diffusers' (generator=torch.Generator("cpu").manual_seed(seed)) for one image per generator seed: a batch of
    /// one, or diffusers given a list of generators seeded seed, seed + 1, …
    /// </summary>
    public string Noise { get; init; } = Schedulers.NoiseSources.Default;

    public int Width { get; init; } = 512;

    public int Height { get; init; } = 512;

    /// <summary>How many images.</summary>
    public int Count { get; init; } = 1;

    /// <summary>img2img: the starting picture as [3, Height, Width] floats in [-1, 1]; null for txt2img.</summary>
    public float[]? InitImage { get; init; }

    /// <summary>img2img: how much of the schedule to run (1 = ignore the init image's content, 0 = return it).</summary>
    public double Strength { get; init; } = 0.75;

    /// <summary>Checks every field, naming the CLI option that sets it in the error.</summary>
    public void Validate()
    {
        if (Width <= 0 || Width % 8 != 0)
            throw new InvalidArgumentException("--width", $"{Width} is not a positive multiple of 8; use {Math.Max(8, Width / 8 * 8)} or {Math.Max(8, (Width + 7) / 8 * 8)}");
        if (Height <= 0 || Height % 8 != 0)
            throw new InvalidArgumentException("--height", $"{Height} is not a positive multiple of 8; use {Math.Max(8, Height / 8 * 8)} or {Math.Max(8, (Height + 7) / 8 * 8)}");
        if (Scheduler is not null && !Schedulers.SchedulerFactory.Names.Contains(Scheduler.Trim().ToLowerInvariant()))
            throw new InvalidArgumentException("--scheduler", $"\"{Scheduler}\" is not a scheduler; use one of {string.Join(", ", Schedulers.SchedulerFactory.Names)}");
        if (!Schedulers.NoiseSources.IsKnown(Noise))
            throw new InvalidArgumentException("--rng", $"\"{Noise}\" is not a noise source; use one of {string.Join(", ", Schedulers.NoiseSources.Names)}");
        if (Steps is < 1 or > 1000) throw new InvalidArgumentException("--steps", $"{Steps} is out of range; use 1 to 1000");
        if (Count is < 1 or > 64) throw new InvalidArgumentException("--count", $"{Count} is out of range; use 1 to 64");
        if (Noise.Trim().Equals("numpy", StringComparison.OrdinalIgnoreCase) && (Seed > uint.MaxValue || (ulong)(Count - 1) > uint.MaxValue - Seed))
            throw new InvalidArgumentException("--seed", $"{Seed} is out of range for --rng numpy with --count {Count}: numpy seeds go from 0 to 4294967295 and image i uses seed + i");
        if (double.IsNaN(Guidance) || Guidance < 0 || Guidance > 100) throw new InvalidArgumentException("--guidance", $"{Guidance} is out of range; use 0 to 100 (1 or less turns guidance off)");
        if (InitImage is not null)
        {
            if (double.IsNaN(Strength) || Strength is <= 0 or > 1) throw new InvalidArgumentException("--strength", $"{Strength} is out of range; use a value in (0, 1]");
            if (InitImage.Length != 3L * Width * Height)
                throw new InvalidArgumentException("--init-image", $"holds {InitImage.Length} values; expected 3×{Height}×{Width}");
        }
    }
}

/// <summary>Progress after each denoising step.</summary>
public readonly record struct GenerationProgress(int Step, int TotalSteps, TimeSpan Elapsed, double StepsPerSecond);

/// <summary>
/// Wall-clock time spent in each component of one generation. <see cref="Denoiser"/> is time inside ONNX Runtime's UNet
/// runs only; <see cref="PipelineOverhead"/> is the rest of the denoising loop: scheduler steps, guidance, copies.
/// </summary>
public sealed record GenerationTimings(
    TimeSpan TextEncoder,
    TimeSpan ImageEncoder,
    TimeSpan Denoiser,
    int DenoiserCalls,
    int Steps,
    TimeSpan PipelineOverhead,
    TimeSpan Decoder,
    TimeSpan Total)
{
    public double StepsPerSecond => Denoiser.TotalSeconds + PipelineOverhead.TotalSeconds > 0 ? Steps / (Denoiser.TotalSeconds + PipelineOverhead.TotalSeconds) : 0;
}

/// <summary>The pictures ([3, Height, Width] floats in [-1, 1] each), their seeds and where the time went.</summary>
public sealed record GenerationResult(IReadOnlyList<float[]> Images, IReadOnlyList<ulong> Seeds, int Width, int Height, string Scheduler, GenerationTimings Timings, IReadOnlyList<string> Warnings)
{
    /// <summary>Per-stage times of a multi-stage pipeline (Stable Cascade: prior, decoder, vqgan); empty for SD.</summary>
    public IReadOnlyList<StageTiming> Stages { get; init; } = [];
}

/// <summary>
/// The shape a pipeline will be used at: image size and UNet rows (images × 2 with guidance). Lets the UNet session be
/// planned for fixed shapes and warmed up at them when it is created.
/// </summary>
public sealed record GenerationPlan(int Width, int Height, int Rows, bool WarmUp = true)
{
    public static GenerationPlan For(GenerationRequest request, bool warmUp = true) =>
        new(request.Width, request.Height, request.Count * (request.Guidance > 1 ? 2 : 1), warmUp);
}
