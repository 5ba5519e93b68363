namespace EdgeDiffusion.Pipelines;

/// <summary>What to generate. Defaults follow common SD front ends.</summary>
public sealed record GenerationRequest
{
    public required string Prompt { get; init; }

    public string NegativePrompt { get; init; } = "";

    public int Steps { get; init; } = 20;

    /// <summary>
    /// Classifier-free guidance scale; at or below 1 the unconditional pass is skipped. Null (the default) uses the
    /// model's recommended scale (model_index.json's <c>_edgediffusion.guidance_scale</c>, see
    /// <see cref="StableDiffusionPipeline.ModelGuidance"/>), else <see cref="DefaultGuidance"/>, as <c>edgediff generate</c>
    /// does; <see cref="GenerationResult.Guidance"/> says which scale was used.
    /// </summary>
    public double? Guidance { get; init; }

    /// <summary>Stable Diffusion's usual classifier-free guidance scale, for models that recommend none.</summary>
    public const double DefaultGuidance = 7.5;

    /// <summary>The scale a generation uses: <see cref="Guidance"/> when set, else the model's, else <see cref="DefaultGuidance"/>.</summary>
    public double GuidanceFor(double? modelGuidance) => Guidance ?? modelGuidance ?? DefaultGuidance;

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

    /// <summary>
    /// ControlNet: one control image (with its scale and guidance range) per ControlNet the pipeline was loaded with
    /// (<see cref="StableDiffusionPipeline.Load(string, Runtime.SessionSettings?, bool, GenerationPlan?, Lora.LoraOptions?, ControlNets.ControlNetOptions?)"/>),
    /// in that order; empty: the plain UNet.
    /// </summary>
    public IReadOnlyList<ControlNets.ControlImage> Controls { get; init; } = [];

    /// <summary>Checks every field, naming the CLI option that sets it in the error.</summary>
    public void Validate()
    {
        if (Width <= 0 || Width % 8 != 0)
            throw new InvalidArgumentException("--width", SizeProblem(Width));
        if (Height <= 0 || Height % 8 != 0)
            throw new InvalidArgumentException("--height", SizeProblem(Height));
        if (Scheduler is not null && !Schedulers.SchedulerFactory.Names.Contains(Scheduler.Trim().ToLowerInvariant()))
            throw new InvalidArgumentException("--scheduler", $"\"{Scheduler}\" is not a scheduler; use one of {string.Join(", ", Schedulers.SchedulerFactory.Names)}");
        if (!Schedulers.NoiseSources.IsKnown(Noise))
            throw new InvalidArgumentException("--rng", $"\"{Noise}\" is not a noise source; use one of {string.Join(", ", Schedulers.NoiseSources.Names)}");
        if (Steps is < 1 or > 1000) throw new InvalidArgumentException("--steps", $"{Steps} is out of range; use 1 to 1000");
        if (Count is < 1 or > 64) throw new InvalidArgumentException("--count", $"{Count} is out of range; use 1 to 64");
        if (Noise.Trim().Equals("numpy", StringComparison.OrdinalIgnoreCase) && (Seed > uint.MaxValue || (ulong)(Count - 1) > uint.MaxValue - Seed))
            throw new InvalidArgumentException("--seed", $"{Seed} is out of range for --rng numpy with --count {Count}: numpy seeds go from 0 to 4294967295 and image i uses seed + i");
        if (Guidance is double g && (double.IsNaN(g) || g < 0 || g > 100))
            throw new InvalidArgumentException("--guidance", $"{g} is out of range; use 0 to 100 (1 or less turns guidance off)");
        for (int k = 0; k < Controls.Count; k++) Controls[k].Validate(k, Width, Height);
        if (InitImage is not null)
        {
            ValidateStrength();
            if (InitImage.Length != 3L * Width * Height)
                throw new InvalidArgumentException("--init-image", $"holds {InitImage.Length} values; expected 3×{Height}×{Width}");
        }
    }

    /// <summary>
    /// The img2img strength check on its own, for callers that check a request before its init image is loaded (the CLI,
    /// before reading the file and loading any session); <see cref="Validate"/> makes it whenever an init image is set.
    /// </summary>
    public void ValidateStrength()
    {
        if (double.IsNaN(Strength) || Strength is <= 0 or > 1)
            throw new InvalidArgumentException("--strength", $"{Strength} is out of range; use a value in (0, 1], e.g. 0.75");
    }

    private static string SizeProblem(int size)
    {
        if (size <= 0) return $"{size} is not a positive multiple of 8; use 8 or more (the default model, tiny-shapes, is made for 64)";
        int below = size / 8 * 8, above = below + 8;
        return below == 0
            ? $"{size} is not a multiple of 8; use {above}"
            : $"{size} is not a multiple of 8; use {below} or {above}";
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
    /// <summary>The ControlNets' part of <see cref="Denoiser"/> (zero without ControlNet).</summary>
    public TimeSpan ControlNet { get; init; }

    public double StepsPerSecond => Denoiser.TotalSeconds + PipelineOverhead.TotalSeconds > 0 ? Steps / (Denoiser.TotalSeconds + PipelineOverhead.TotalSeconds) : 0;
}

/// <summary>The pictures ([3, Height, Width] floats in [-1, 1] each), their seeds and where the time went.</summary>
public sealed record GenerationResult(IReadOnlyList<float[]> Images, IReadOnlyList<ulong> Seeds, int Width, int Height, string Scheduler, GenerationTimings Timings, IReadOnlyList<string> Warnings)
{
    /// <summary>Per-stage times of a multi-stage pipeline (Stable Cascade: prior, decoder, vqgan); empty for SD.</summary>
    public IReadOnlyList<StageTiming> Stages { get; init; } = [];

    /// <summary>The guidance scale used (the request's, else the model's, else <see cref="GenerationRequest.DefaultGuidance"/>).</summary>
    public double Guidance { get; init; } = GenerationRequest.DefaultGuidance;

    /// <summary>The request that made these pictures (set by <see cref="StableDiffusionPipeline.Generate"/>).</summary>
    public GenerationRequest? Request { get; init; }

    /// <summary>The model's name (<see cref="StableDiffusionPipeline.Name"/>), written into the PNG parameters.</summary>
    public string Model { get; init; } = "model";

    /// <summary>Picture <paramref name="index"/> as RGBA pixels.</summary>
    public Imaging.RgbaImage Image(int index = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Images.Count);
        return Imaging.ImageTensor.ToImage(Images[index], 1, 3, Height, Width, 0);
    }

    /// <summary>
    /// How picture <paramref name="index"/> was made, as the PNG <c>parameters</c> text chunk holds it (prompt, steps,
    /// sampler, CFG scale, seed, size, model; the denoising strength for img2img, the noise source when not the default).
    /// </summary>
    public Imaging.GenerationParameters Parameters(int index = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Seeds.Count);
        var request = Request ?? throw new InvalidOperationException("this result has no Request; set it (StableDiffusionPipeline.Generate does) to write its parameters");
        string noise = request.Noise.Trim().ToLowerInvariant();
        return new Imaging.GenerationParameters(request.Prompt, request.NegativePrompt, (long)Seeds[index], request.Steps, Scheduler, Guidance,
            Width, Height, Model, request.InitImage is null ? null : request.Strength, noise == Schedulers.NoiseSources.Default ? null : noise);
    }

    /// <summary>
    /// Writes picture <paramref name="index"/> as a PNG with its <see cref="Parameters"/> in a <c>parameters</c> text chunk,
    /// through a temporary file renamed into place (the folder is created if needed). A path that cannot be written is an
    /// <see cref="Imaging.ImageException"/> naming it.
    /// </summary>
    public void SavePng(string path, int index = 0) => Imaging.PngWriter.Write(path, Image(index), Parameters(index));
}

/// <summary>
/// The shape a pipeline will be used at: image size and UNet rows (images × 2 with guidance). Lets the UNet session be
/// planned for fixed shapes and warmed up at them when it is created.
/// </summary>
public sealed record GenerationPlan(int Width, int Height, int Rows, bool WarmUp = true)
{
    /// <param name="modelGuidance">The model's recommended guidance (<see cref="StableDiffusionPipeline.ConfiguredGuidance"/>), used when the request sets none.</param>
    public static GenerationPlan For(GenerationRequest request, bool warmUp = true, double? modelGuidance = null) =>
        new(request.Width, request.Height, request.Count * (request.GuidanceFor(modelGuidance) > 1 ? 2 : 1), warmUp);
}
