using System.Diagnostics;
using System.Runtime.CompilerServices;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Schedulers;
using EdgeDiffusion.Text;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// Text-to-image and image-to-image with a Stable Diffusion 1.x/2.x-style model: tokenizer → text encoder →
/// denoising loop (UNet + scheduler, classifier-free guidance) → VAE decoder. Composes the pieces; owns and disposes them.
/// </summary>
public sealed class StableDiffusionPipeline : IDisposable
{
    private readonly ClipTokenizer _tokenizer;
    private readonly ComponentSlot<ITextEncoder> _textEncoder;
    private readonly IDenoiser _denoiser;
    private readonly ComponentSlot<IImageDecoder> _decoder;
    private readonly ComponentSlot<IImageEncoder>? _encoder;
    private readonly SchedulerConfig _schedulerConfig;

    /// <summary>A pipeline over components already created; it owns and disposes them.</summary>
    public StableDiffusionPipeline(ClipTokenizer tokenizer, ITextEncoder textEncoder, IDenoiser denoiser, IImageDecoder decoder,
        SchedulerConfig schedulerConfig, Func<IImageEncoder>? encoderFactory = null, string name = "model")
        : this(tokenizer, ComponentSlot<ITextEncoder>.Loaded(textEncoder), denoiser, ComponentSlot<IImageDecoder>.Loaded(decoder),
            schedulerConfig, encoderFactory is null ? null : new ComponentSlot<IImageEncoder>(encoderFactory, keepLoaded: true), name)
    {
    }

    private StableDiffusionPipeline(ClipTokenizer tokenizer, ComponentSlot<ITextEncoder> textEncoder, IDenoiser denoiser, ComponentSlot<IImageDecoder> decoder,
        SchedulerConfig schedulerConfig, ComponentSlot<IImageEncoder>? encoder, string name)
    {
        _tokenizer = tokenizer;
        _textEncoder = textEncoder;
        _denoiser = denoiser;
        _decoder = decoder;
        _schedulerConfig = schedulerConfig;
        _encoder = encoder;
        Name = name;
    }

    /// <summary>The model's name (its folder's name), written into PNG parameters.</summary>
    public string Name { get; }

    /// <summary>The scheduler used when a request names none.</summary>
    public string DefaultScheduler => SchedulerFactory.DefaultName(_schedulerConfig) ?? "euler";

    /// <summary>The size the model was made for: unet/config.json's sample_size × 8, the UNet's fixed size, else 512².</summary>
    public (int Width, int Height) DefaultSize { get; private init; } = (512, 512);

    /// <summary>The size a model folder says it was made for (unet/config.json's sample_size × 8), readable before loading.</summary>
    public static (int Width, int Height)? ConfiguredSize(string folder) =>
        ComponentConfig.SampleSize(Path.Combine(folder, "unet")) is { } s ? (s * 8, s * 8) : null;

    /// <summary>
    /// The guidance scale the model's makers recommend: model_index.json's <c>_edgediffusion.guidance_scale</c> (a
    /// metadata key diffusers ignores), or null when the folder does not say. A value that is not a number ≥ 0 is a
    /// <see cref="ModelFolderException"/> naming the file.
    /// </summary>
    public static double? ConfiguredGuidance(string folder)
    {
        string index = Path.Combine(folder, "model_index.json");
        if (!File.Exists(index)) return null;
        System.Text.Json.Nodes.JsonNode? value;
        try
        {
            value = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))?["_edgediffusion"]?["guidance_scale"];
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw new ModelFolderException(index, $"is not valid JSON ({e.Message.Split('\n')[0]}); restore it from the model's source");
        }
        if (value is null) return null;
        return value is System.Text.Json.Nodes.JsonValue v && v.TryGetValue(out double g) && g >= 0 && double.IsFinite(g)
            ? g
            : throw new ModelFolderException(index, $"_edgediffusion.guidance_scale is {value.ToJsonString()}; write a number ≥ 0 such as 7.5");
    }

    /// <summary>
    /// The guidance scale used when a request sets none: the folder's <see cref="ConfiguredGuidance"/> for a loaded folder,
    /// null for a pipeline built from components (then <see cref="GenerationRequest.DefaultGuidance"/> applies).
    /// </summary>
    public double? ModelGuidance { get; init; }

    /// <summary>The default model's folder name: tiny-shapes (64×64, guidance 3; its vocabulary is in README.md).</summary>
    public const string DefaultModelName = "tiny-shapes";

    /// <summary>
    /// The default model's folder: <c>models/tiny-shapes</c> beside the application's binaries (the EdgeDiffusion project
    /// copies it into every referencing project's output), else in the working folder or a folder above it, else above
    /// the binaries (a repository checkout). Missing everywhere, a <see cref="ModelFolderException"/> saying what to do.
    /// </summary>
    public static string DefaultModel => FindDefaultModel()
        ?? throw new ModelFolderException(Path.Combine("models", DefaultModelName),
            $"folder not found beside the application ({AppContext.BaseDirectory}) or above it or the working folder; reference src/EdgeDiffusion/EdgeDiffusion.csproj (it copies the model to your output) or pass a model folder to Load");

    private static string? FindDefaultModel() => FindShippedFolder(DefaultModelName);

    /// <summary>
    /// models/<paramref name="name"/> with a model_index.json beside the application's binaries, else in the working
    /// folder or a folder above it, else above the binaries (a repository checkout); null when nowhere.
    /// </summary>
    internal static string? FindShippedFolder(string name)
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "models", name);
        if (File.Exists(Path.Combine(beside, "model_index.json"))) return beside;
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", name);
                if (File.Exists(Path.Combine(candidate, "model_index.json"))) return candidate;
            }
        return null;
    }

    /// <summary>Opens the default model (<see cref="DefaultModel"/>) with default settings.</summary>
    public static StableDiffusionPipeline Load() => Load(DefaultModel);

    /// <summary>Time spent creating the sessions, per component.</summary>
    public IReadOnlyDictionary<string, TimeSpan> LoadTimes { get; private init; } = new Dictionary<string, TimeSpan>();

    /// <summary>
    /// Opens a diffusers/optimum ONNX folder: tokenizer/, text_encoder/, unet/, vae_decoder/ (vae_encoder/ for img2img,
    /// opened on first use), scheduler/scheduler_config.json (SD defaults when absent). model_index.json is optional.
    /// </summary>
    /// <param name="lowMemory">
    /// Keep only the UNet loaded: the text encoder and the VAE are created when needed and disposed right after, so
    /// their weights and buffers are never resident during the denoising loop. Same output, byte for byte; each
    /// generation pays their session creation.
    /// </param>
    /// <param name="plan">
    /// The size this pipeline will generate at, when known: the UNet's symbolic dimensions are fixed to it (a static-shaped
    /// graph; other sizes are then refused) and, with <see cref="GenerationPlan.WarmUp"/>, one UNet call at that shape is
    /// made during loading, so the first real step runs at steady speed.
    /// </param>
    /// <param name="loras">LoRAs merged into the UNet and text encoder weights at load (copies; the folder is not changed).</param>
    /// <param name="controlNets">
    /// ControlNets loaded beside the plain UNet, with the UNet that takes their residuals (<see cref="ControlNets.ControlNetFolder"/>);
    /// a request's <see cref="GenerationRequest.Controls"/> then selects them. Checked against that UNet here, before any step.
    /// </param>
    public static StableDiffusionPipeline Load(string folder, SessionSettings? settings = null, bool lowMemory = false, GenerationPlan? plan = null, Lora.LoraOptions? loras = null,
        ControlNets.ControlNetOptions? controlNets = null)
    {
        var model = ModelFolder.Open(folder);
        double? modelGuidance = ConfiguredGuidance(model.Root);
        string tokenizerDir = Path.Combine(model.Root, "tokenizer");
        if (!Directory.Exists(tokenizerDir))
            throw new ModelFolderException(tokenizerDir, "folder is missing; a model folder needs tokenizer/vocab.json and tokenizer/merges.txt");
        var tokenizer = ClipTokenizer.FromFolder(tokenizerDir);
        string schedulerFile = Path.Combine(model.Root, "scheduler", "scheduler_config.json");
        var schedulerConfig = File.Exists(schedulerFile) ? SchedulerConfig.FromFile(schedulerFile) : new SchedulerConfig { ClassName = "EulerDiscreteScheduler" };
        string textPath = model.RequireComponent("text_encoder"), unetPath = model.RequireComponent("unet"), vaePath = model.RequireComponent("vae_decoder");
        model.Components.TryGetValue("vae_encoder", out var encoderPath);

        var times = new Dictionary<string, TimeSpan>();
        var disposables = new List<IDisposable>();
        Lora.MergedLoraModels? merged = null;
        if (controlNets is { Folders.Count: > 0 } && loras is { Adapters.Count: > 0 })
            throw new InvalidArgumentException("--lora", "is not supported together with a ControlNet yet (the ControlNet's UNet would not get the LoRA); drop --lora or --control-image");
        SessionSettings? textSettings = settings, unetBaseSettings = settings;
        if (loras is { Adapters.Count: > 0 })
        {
            var sw = Stopwatch.StartNew();
            merged = Lora.MergedLoraModels.Prepare(model.Components, loras);
            disposables.Add(merged);
            times["lora merge"] = sw.Elapsed;
            // A merged copy is new on every load: caching its session would only fill the cache.
            if (merged.Changed("text_encoder")) textSettings = (settings ?? SessionSettings.Default) with { Cache = null };
            if (merged.Changed("unet")) unetBaseSettings = (settings ?? SessionSettings.Default) with { Cache = null };
            textPath = merged.PathFor("text_encoder", textPath);
            unetPath = merged.PathFor("unet", unetPath);
        }
        T Timed<T>(string component, Func<T> create) where T : IDisposable
        {
            var sw = Stopwatch.StartNew();
            var created = create();
            times[component] = sw.Elapsed;
            disposables.Add(created);
            return created;
        }
        void Load<T>(string component, ComponentSlot<T> slot) where T : class, IDisposable
        {
            var sw = Stopwatch.StartNew();
            slot.Acquire();
            times[component] = sw.Elapsed;
        }
        try
        {
            var text = new ComponentSlot<ITextEncoder>(() => new OnnxTextEncoder(textPath, textSettings), keepLoaded: !lowMemory);
            var vae = new ComponentSlot<IImageDecoder>(() => new OnnxVaeDecoder(vaePath, settings), keepLoaded: !lowMemory);
            disposables.Add(text);
            disposables.Add(vae);
            if (!lowMemory) Load("text_encoder", text);
            var unetSettings = plan is null ? unetBaseSettings : (unetBaseSettings ?? SessionSettings.Default) with
            {
                FreeDimensions = UNetShapes.FreeDimensions(unetPath, plan.Rows, plan.Height / 8, plan.Width / 8),
            };
            var unet = Timed("unet", () => new OnnxUNet(unetPath, unetSettings));
            if (plan is { WarmUp: true })
            {
                var sw = Stopwatch.StartNew();
                unet.WarmUp(plan.Rows, plan.Height / 8, plan.Width / 8);
                times["unet warm-up"] = sw.Elapsed;
            }
            ControlNets.ControlledUNet? controlled = null;
            if (controlNets is { Folders.Count: > 0 })
            {
                controlled = Timed("controlnet", () => ControlNets.ControlNetOptions.Open(controlNets, unetPath, unetBaseSettings, plan));
                if (controlled.LatentChannels != unet.LatentChannels)
                    throw new ModelFolderException(controlled.ModelPath, $"takes {controlled.LatentChannels} latent channels but {unetPath} takes {unet.LatentChannels}; use a ControlNet folder made for this model");
            }
            if (!lowMemory) Load("vae_decoder", vae);
            var encoder = encoderPath is null ? null : new ComponentSlot<IImageEncoder>(() => new OnnxVaeEncoder(encoderPath, settings), keepLoaded: !lowMemory);
            var size = ConfiguredSize(model.Root)
                ?? (unet.FixedWidth is { } fw && unet.FixedHeight is { } fh ? (fw * 8, fh * 8) : (512, 512));
            return new StableDiffusionPipeline(tokenizer, text, unet, vae, schedulerConfig, encoder, Path.GetFileName(model.Root)) { LoadTimes = times, DefaultSize = size, ModelGuidance = modelGuidance, _merged = merged, LoraReports = merged?.Reports ?? [], _controlled = controlled };
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    public GenerationResult Generate(GenerationRequest request, Action<GenerationProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var total = Stopwatch.StartNew();
        IDenoiser denoiser = _denoiser;
        if (request.Controls.Count > 0)
        {
            var controlled = _controlled ?? throw new InvalidArgumentException("--control-image", $"{Name} was loaded without a ControlNet; load it with controlNets (the CLI: --control-model DIR, or a ControlNet folder beside the model)");
            controlled.SetControls(request.Controls);
            denoiser = controlled;
        }
        var scheduler = SchedulerFactory.Create(request.Scheduler ?? DefaultScheduler, _schedulerConfig);
        scheduler.SetTimesteps(request.Steps);
        var warnings = new List<string>();

        // Text: [negative…, positive…] rows when guiding, positive rows otherwise.
        double guidance = request.GuidanceFor(ModelGuidance);
        bool guided = guidance > 1;
        var positive = _tokenizer.Encode(request.Prompt);
        if (positive.Truncated)
            warnings.Add($"prompt is longer than {_tokenizer.MaxLength} tokens; dropped from \"{positive.FirstDroppedWord}\" on");
        var prompts = new List<int[]>();
        if (guided)
        {
            var negative = _tokenizer.Encode(request.NegativePrompt);
            if (negative.Truncated)
                warnings.Add($"negative prompt is longer than {_tokenizer.MaxLength} tokens; dropped from \"{negative.FirstDroppedWord}\" on");
            prompts.Add(negative.Ids);
        }
        prompts.Add(positive.Ids);
        var sw = Stopwatch.StartNew();
        float[] embeddings;
        int sequence, width;
        try { embeddings = _textEncoder.Acquire().Encode(prompts, out sequence, out width); }
        finally { _textEncoder.Release(); }
        var textTime = sw.Elapsed;

        int n = request.Count, halves = guided ? 2 : 1, rows = n * halves;
        int latentHeight = request.Height / 8, latentWidth = request.Width / 8, channels = denoiser.LatentChannels;
        int latentSize = channels * latentHeight * latentWidth;
        int hiddenRow = sequence * width;
        var hidden = new float[rows * hiddenRow];
        for (int half = 0; half < halves; half++)
            for (int i = 0; i < n; i++)
                embeddings.AsSpan(half * hiddenRow, hiddenRow).CopyTo(hidden.AsSpan((half * n + i) * hiddenRow));
        denoiser.SetConditioning(hidden, rows, sequence, width, latentHeight, latentWidth);

        // Latents: image i from its own seeded stream.
        var seeds = Enumerable.Range(0, n).Select(i => request.Seed + (ulong)i).ToArray();
        var noise = new BatchNoise(seeds.Select(s => NoiseSources.Create(request.Noise, s)).ToArray());
        var latents = new float[n * latentSize];
        noise.Fill(latents);
        int start = 0;
        var encodeTime = TimeSpan.Zero;
        if (request.InitImage is not null)
        {
            sw.Restart();
            var encoder = _encoder ?? throw new ModelFolderException(Name, "has no vae_encoder/model.onnx; img2img needs the VAE encoder");
            float[] initLatents;
            int encodedChannels;
            try { initLatents = encoder.Acquire().Encode(request.InitImage, request.Height, request.Width, out encodedChannels); }
            finally { encoder.Release(); }
            if (encodedChannels != channels || initLatents.Length != latentSize)
                throw new ModelFolderException(Name, $"vae_encoder gives {encodedChannels} latent channels; the UNet takes {channels}");
            encodeTime = sw.Elapsed;
            start = scheduler.StartIndexForStrength(request.Strength);
            var originals = new float[latents.Length];
            for (int i = 0; i < n; i++) initLatents.CopyTo(originals, i * latentSize);
            if (start < scheduler.Timesteps.Count) scheduler.AddNoise(originals, latents, start, latents);
            else originals.CopyTo(latents, 0);
        }
        else
        {
            float sigma = scheduler.InitNoiseSigma;
            for (int i = 0; i < latents.Length; i++) latents[i] *= sigma;
        }

        var controlNetBefore = (denoiser as ControlNets.ControlledUNet)?.ControlNetTime ?? TimeSpan.Zero;
        var loop = DenoisingLoop.Run(scheduler, denoiser, latents, n, guidance, start, noise, progress, cancellation);

        sw.Restart();
        var images = new List<float[]>(n);
        try
        {
            var decoder = _decoder.Acquire();
            for (int i = 0; i < n; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                images.Add(decoder.Decode(latents.AsSpan(i * latentSize, latentSize), channels, latentHeight, latentWidth));
            }
        }
        finally { _decoder.Release(); }
        var decodeTime = sw.Elapsed;
        var timings = new GenerationTimings(textTime, encodeTime, loop.Model, loop.Calls, loop.Steps, loop.Overhead, decodeTime, total.Elapsed)
        {
            ControlNet = denoiser is ControlNets.ControlledUNet c ? c.ControlNetTime - controlNetBefore : TimeSpan.Zero,
        };
        return new GenerationResult(images, seeds, request.Width, request.Height, scheduler.Name, timings, warnings)
        {
            Guidance = guidance, Request = request, Model = Name,
        };
    }

    private Lora.MergedLoraModels? _merged;

    private ControlNets.ControlledUNet? _controlled;

    /// <summary>The ControlNets loaded (empty without), in the order a request's <see cref="GenerationRequest.Controls"/> pairs with them.</summary>
    public IReadOnlyList<ControlNets.OnnxControlNet> LoadedControlNets => _controlled?.ControlNets ?? [];

    /// <summary>What each merged LoRA changed, per component (empty without LoRAs).</summary>
    public IReadOnlyList<Lora.LoraMergeReport> LoraReports { get; private init; } = [];

    public void Dispose()
    {
        _textEncoder.Dispose();
        _denoiser.Dispose();
        _decoder.Dispose();
        _encoder?.Dispose();
        _merged?.Dispose();
        _controlled?.Dispose();
    }
}
