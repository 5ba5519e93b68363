using System.Diagnostics;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Schedulers;
using EdgeDiffusion.Text;

namespace EdgeDiffusion.Pipelines;

/// <summary>What to generate with a Stable Cascade model; null fields take the model folder's defaults (<see cref="CascadeFolder"/>).</summary>
public sealed record CascadeRequest
{
    public required string Prompt { get; init; }
    public string NegativePrompt { get; init; } = "";
    public ulong Seed { get; init; }
    public int Count { get; init; } = 1;
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int? PriorSteps { get; init; }
    public int? DecoderSteps { get; init; }
    public double? PriorGuidance { get; init; }
    public double? DecoderGuidance { get; init; }

    /// <summary>The noise source by name (edgediff, torch, numpy; <see cref="NoiseSources"/>).</summary>
    public string Noise { get; init; } = NoiseSources.Default;

    /// <summary>Checks every field, naming the CLI option that sets it.</summary>
    public void Validate()
    {
        if (Count is < 1 or > 64) throw new InvalidArgumentException("--count", $"{Count} is out of range; use 1 to 64");
        if (PriorSteps is < 1 or > 1000) throw new InvalidArgumentException("--prior-steps", $"{PriorSteps} is out of range; use 1 to 1000");
        if (DecoderSteps is < 1 or > 1000) throw new InvalidArgumentException("--decoder-steps", $"{DecoderSteps} is out of range; use 1 to 1000");
        if (PriorGuidance is double pg && (double.IsNaN(pg) || pg is < 0 or > 100)) throw new InvalidArgumentException("--prior-guidance", $"{pg} is out of range; use 0 to 100 (1 or less turns guidance off)");
        if (DecoderGuidance is double dg && (double.IsNaN(dg) || dg is < 0 or > 100)) throw new InvalidArgumentException("--decoder-guidance", $"{dg} is out of range; use 0 to 100 (1 or less turns guidance off)");
        if (Width is int w && (w <= 0 || w % 4 != 0)) throw new InvalidArgumentException("--width", $"{Width} is not a positive multiple of 4 (Stage A's factor)");
        if (Height is int h && (h <= 0 || h % 4 != 0)) throw new InvalidArgumentException("--height", $"{Height} is not a positive multiple of 4 (Stage A's factor)");
        NoiseSources.Create(Noise, Seed);
    }
}

/// <summary>Progress of one stage ("prior" or "decoder") of a Stable Cascade generation.</summary>
public readonly record struct StageProgress(string Stage, GenerationProgress Progress);

/// <summary>Where one stage's time went.</summary>
public sealed record StageTiming(string Stage, TimeSpan Total, TimeSpan Model, int Calls, int Steps);

/// <summary>
/// Stable Cascade text-to-image: tokenizer → CLIP text encoder (hidden states and pooled embedding) → prior (Stage C,
/// DDPMWuerstchen steps with classifier-free guidance over 16-channel latents at ceil(size/42.67)) → decoder (Stage B, its
/// effnet input the prior's latents, pooled text, over Stage A's latents at size/4) → Stage A's VQGAN decoder. Both stages
/// run in the <see cref="DenoisingLoop"/> the SD pipeline uses, with the same per-image seeded noise.
/// </summary>
public sealed class StableCascadePipeline : IDisposable
{
    /// <summary>diffusers' StableCascadePriorPipeline resolution_multiple: the prior's latent side is ceil(size / 42.67).</summary>
    public const double ResolutionMultiple = 42.67;

    private readonly ClipTokenizer _priorTokenizer, _decoderTokenizer;
    private readonly OnnxCascadeTextEncoder _priorText, _decoderText;
    private readonly bool _sharedText;
    private readonly OnnxCascadeStage _prior, _decoder;
    private readonly OnnxVqganDecoder _vqgan;
    private readonly CascadeFolder _folder;
    private readonly (double S, double Scaler) _priorSchedule, _decoderSchedule;

    private StableCascadePipeline(CascadeFolder folder, ClipTokenizer priorTokenizer, ClipTokenizer decoderTokenizer, OnnxCascadeTextEncoder priorText,
        OnnxCascadeTextEncoder decoderText, OnnxCascadeStage prior, OnnxCascadeStage decoder, OnnxVqganDecoder vqgan)
    {
        _folder = folder;
        _priorTokenizer = priorTokenizer;
        _decoderTokenizer = decoderTokenizer;
        _priorText = priorText;
        _decoderText = decoderText;
        _sharedText = ReferenceEquals(priorText, decoderText);
        _prior = prior;
        _decoder = decoder;
        _vqgan = vqgan;
        var p = folder.PriorScheduler is { } ps ? DdpmWuerstchenScheduler.FromFile(ps) : new DdpmWuerstchenScheduler();
        var d = folder.DecoderScheduler is { } ds ? DdpmWuerstchenScheduler.FromFile(ds) : new DdpmWuerstchenScheduler();
        _priorSchedule = (p.S, p.Scaler);
        _decoderSchedule = (d.S, d.Scaler);
    }

    public CascadeFolder Folder => _folder;

    /// <summary>The model folder's name, for PNG parameters.</summary>
    public string Name => Path.GetFileName(_folder.Root);

    /// <summary>Time spent creating the sessions, per component.</summary>
    public IReadOnlyDictionary<string, TimeSpan> LoadTimes { get; private init; } = new Dictionary<string, TimeSpan>();

    public static StableCascadePipeline Load(string folder, SessionSettings? settings = null) => Load(CascadeFolder.Open(folder), settings);

    /// <summary>Loads every stage and checks that their widths agree (a one-line error naming both files otherwise).</summary>
    public static StableCascadePipeline Load(CascadeFolder folder, SessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var times = new Dictionary<string, TimeSpan>();
        var made = new List<IDisposable>();
        T Timed<T>(string name, Func<T> create) where T : IDisposable
        {
            var sw = Stopwatch.StartNew();
            var value = create();
            made.Add(value);
            times[name] = sw.Elapsed;
            return value;
        }
        try
        {
            var priorTokenizer = ClipTokenizer.FromFolder(folder.PriorTokenizer);
            var decoderTokenizer = folder.DecoderTokenizer == folder.PriorTokenizer ? priorTokenizer : ClipTokenizer.FromFolder(folder.DecoderTokenizer);
            var priorText = Timed("prior text encoder", () => new OnnxCascadeTextEncoder(folder.PriorTextEncoder, settings));
            var decoderText = folder.DecoderTextEncoder == folder.PriorTextEncoder || SameFile(folder.DecoderTextEncoder, folder.PriorTextEncoder)
                ? priorText : Timed("text encoder", () => new OnnxCascadeTextEncoder(folder.DecoderTextEncoder, settings));
            var prior = Timed("prior", () => new OnnxCascadeStage(folder.Prior, settings));
            var decoder = Timed("decoder", () => new OnnxCascadeStage(folder.Decoder, settings));
            var vqgan = Timed("vqgan", () => new OnnxVqganDecoder(folder.Vqgan, settings));
            Check(prior.PooledWidth == priorText.PooledWidth, folder.Prior, folder.PriorTextEncoder,
                $"clip_text_pooled takes {prior.PooledWidth} values but the text encoder's text_embeds has {priorText.PooledWidth}");
            Check(decoder.PooledWidth == decoderText.PooledWidth, folder.Decoder, folder.DecoderTextEncoder,
                $"clip_text_pooled takes {decoder.PooledWidth} values but the text encoder's text_embeds has {decoderText.PooledWidth}");
            Check(prior.TextWidth is not null, folder.Prior, folder.PriorTextEncoder, "has no clip_text input; it is not a prior (Stage C)");
            Check(decoder.EffnetChannels is not null, folder.Decoder, folder.Prior, "has no effnet input; it is not a decoder (Stage B)");
            Check(decoder.EffnetChannels == prior.Channels, folder.Decoder, folder.Prior,
                $"effnet takes {decoder.EffnetChannels} channels but the prior makes {prior.Channels}-channel latents; use a prior and decoder of one model");
            return new StableCascadePipeline(folder, priorTokenizer, decoderTokenizer, priorText, decoderText, prior, decoder, vqgan) { LoadTimes = times };
        }
        catch
        {
            foreach (var d in made) d.Dispose();
            throw;
        }
    }

    private static bool SameFile(string a, string b)
    {
        var fa = new FileInfo(a);
        var fb = new FileInfo(b);
        if (fa.Length != fb.Length || fa.Length > 64L << 20) return false;
        return File.ReadAllBytes(a).AsSpan().SequenceEqual(File.ReadAllBytes(b));
    }

    private static void Check(bool ok, string file, string other, string problem)
    {
        if (!ok) throw new ModelFolderException(file, $"{problem} ({other}); the stages must come from one Stable Cascade model");
    }

    public GenerationResult Generate(CascadeRequest request, Action<StageProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var total = Stopwatch.StartNew();
        int width = request.Width ?? _folder.ImageSize, height = request.Height ?? _folder.ImageSize, n = request.Count;
        if (width % _vqgan.DownscaleFactor != 0 || height % _vqgan.DownscaleFactor != 0)
            throw new InvalidArgumentException("--width", $"{width}x{height} is not a multiple of Stage A's factor {_vqgan.DownscaleFactor}");
        double priorGuidance = request.PriorGuidance ?? _folder.PriorGuidance, decoderGuidance = request.DecoderGuidance ?? _folder.DecoderGuidance;
        int priorSteps = request.PriorSteps ?? _folder.PriorSteps, decoderSteps = request.DecoderSteps ?? _folder.DecoderSteps;
        var warnings = new List<string>();
        var seeds = Enumerable.Range(0, n).Select(i => request.Seed + (ulong)i).ToArray();
        var noise = new BatchNoise(seeds.Select(s => NoiseSources.Create(request.Noise, s)).ToArray());

        // Text, once per stage (one encoder call when both stages share it): rows [negative, positive].
        var sw = Stopwatch.StartNew();
        var priorIds = Ids(_priorTokenizer, request, warnings);
        var priorText = _priorText.Encode(priorIds);
        var decoderText = _sharedText && ReferenceEquals(_priorTokenizer, _decoderTokenizer) ? priorText : _decoderText.Encode(Ids(_decoderTokenizer, request, null));
        var textTime = sw.Elapsed;

        // Stage C: the prior's latents ("image embeddings") at ceil(size / 42.67).
        sw.Restart();
        int ph = (int)Math.Ceiling(height / ResolutionMultiple), pw = (int)Math.Ceiling(width / ResolutionMultiple);
        var priorRows = Rows(priorText, n, priorGuidance > 1);
        _prior.SetConditioning(new CascadeConditioning(priorRows.Pooled, priorRows.Hidden, priorText.Sequence), priorRows.Count, ph, pw);
        var (priorLatents, priorLoop) = Denoise("prior", _prior, _priorSchedule, priorSteps, priorGuidance, n, ph, pw, noise, progress, cancellation);
        var priorTime = sw.Elapsed;

        // Stage B: Stage A's latents at size / 4, effnet = the prior's latents (zeros for the unconditional rows, as diffusers).
        sw.Restart();
        int dh = height / _vqgan.DownscaleFactor, dw = width / _vqgan.DownscaleFactor;
        bool decoderGuided = decoderGuidance > 1;
        var decoderRows = Rows(decoderText, n, decoderGuided);
        var effnet = decoderGuided ? new float[2 * priorLatents.Length] : priorLatents;
        if (decoderGuided) priorLatents.CopyTo(effnet, priorLatents.Length);
        _decoder.SetConditioning(new CascadeConditioning(decoderRows.Pooled, Effnet: effnet, EffnetHeight: ph, EffnetWidth: pw), decoderRows.Count, dh, dw);
        var (latents, decoderLoop) = Denoise("decoder", _decoder, _decoderSchedule, decoderSteps, decoderGuidance, n, dh, dw, noise, progress, cancellation);
        var decoderTime = sw.Elapsed;

        // Stage A.
        sw.Restart();
        var images = new List<float[]>(n);
        int size = _decoder.Channels * dh * dw;
        for (int i = 0; i < n; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            images.Add(_vqgan.Decode(latents.AsSpan(i * size, size), _decoder.Channels, dh, dw));
        }
        var decodeTime = sw.Elapsed;
        var stages = new List<StageTiming>
        {
            new("prior", priorTime, priorLoop.Model, priorLoop.Calls, priorLoop.Steps),
            new("decoder", decoderTime, decoderLoop.Model, decoderLoop.Calls, decoderLoop.Steps),
            new("vqgan", decodeTime, decodeTime, n, 0),
        };
        var timings = new GenerationTimings(textTime, TimeSpan.Zero, priorLoop.Model + decoderLoop.Model, priorLoop.Calls + decoderLoop.Calls,
            priorLoop.Steps + decoderLoop.Steps, priorLoop.Overhead + decoderLoop.Overhead, decodeTime, total.Elapsed);
        return new GenerationResult(images, seeds, width, height, DdpmWuerstchenScheduler.SchedulerName, timings, warnings) { Stages = stages };
    }

    /// <summary>One stage's denoising from seeded noise: its own scheduler, the shared loop, progress under the stage's name.</summary>
    private static (float[] Latents, LoopTimings Loop) Denoise(string stage, OnnxCascadeStage model, (double S, double Scaler) schedule, int steps, double guidance,
        int n, int height, int width, INoiseSource noise, Action<StageProgress>? progress, CancellationToken cancellation)
    {
        var latents = new float[n * model.Channels * height * width];
        noise.Fill(latents);
        var scheduler = new DdpmWuerstchenScheduler(schedule.S, schedule.Scaler);
        scheduler.SetTimesteps(steps);
        var loop = DenoisingLoop.Run(scheduler, model, latents, n, guidance, 0, noise,
            progress is null ? null : p => progress(new StageProgress(stage, p)), cancellation);
        return (latents, loop);
    }

    private static List<int[]> Ids(ClipTokenizer tokenizer, CascadeRequest request, List<string>? warnings)
    {
        var positive = tokenizer.Encode(request.Prompt);
        var negative = tokenizer.Encode(request.NegativePrompt);
        if (warnings is not null && positive.Truncated)
            warnings.Add($"prompt is longer than {tokenizer.MaxLength} tokens; dropped from \"{positive.FirstDroppedWord}\" on");
        return [negative.Ids, positive.Ids];
    }

    /// <summary>The conditioning rows for <paramref name="n"/> images: [unconditional × n, conditional × n] when guided, else conditional × n.</summary>
    private static (float[] Hidden, float[] Pooled, int Count) Rows(CascadeText text, int n, bool guided)
    {
        int hiddenRow = text.Sequence * text.Width, halves = guided ? 2 : 1, rows = n * halves;
        var hidden = new float[rows * hiddenRow];
        var pooled = new float[rows * text.PooledWidth];
        for (int half = 0; half < halves; half++)
        {
            int source = guided ? half : 1; // row 0 of the encoding is the negative prompt, row 1 the prompt
            for (int i = 0; i < n; i++)
            {
                int row = half * n + i;
                text.Hidden.AsSpan(source * hiddenRow, hiddenRow).CopyTo(hidden.AsSpan(row * hiddenRow));
                text.Pooled.AsSpan(source * text.PooledWidth, text.PooledWidth).CopyTo(pooled.AsSpan(row * text.PooledWidth));
            }
        }
        return (hidden, pooled, rows);
    }

    public void Dispose()
    {
        _priorText.Dispose();
        if (!_sharedText) _decoderText.Dispose();
        _prior.Dispose();
        _decoder.Dispose();
        _vqgan.Dispose();
    }
}
