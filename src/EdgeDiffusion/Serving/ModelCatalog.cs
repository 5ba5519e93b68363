// IImageGenerator's request/option types are experimental in Microsoft.Extensions.AI 11 (MEAI001).
#pragma warning disable MEAI001

using System.Collections.Concurrent;
using System.Drawing;
using EdgeDiffusion.Integration;
using EdgeDiffusion.Pipelines;
using Microsoft.Extensions.AI;

namespace EdgeDiffusion.Serving;

/// <summary>
/// The models a server serves: one folder, or the model folders under a root. Names from requests are confined to the
/// root (no separators, "..", rooted paths; the resolved full path, links followed, must stay under it).
/// </summary>
internal sealed class ModelCatalog : IDisposable
{
    private readonly ServerOptions _options;
    private readonly string? _root;
    private readonly ModelEntry? _single;
    private readonly ConcurrentDictionary<string, ModelEntry> _entries = new(StringComparer.Ordinal);

    public ModelCatalog(ServerOptions options)
    {
        _options = options;
        if (options.ModelsRoot is not null && options.Model is not null)
            throw new InvalidArgumentException("--models", "give either --model DIR or --models ROOT, not both");
        if (options.ModelsRoot is { } root)
        {
            _root = Path.GetFullPath(root);
            if (!Directory.Exists(_root)) throw new InvalidArgumentException("--models", $"{root}: folder not found; pass a folder whose subfolders are model folders");
        }
        else
        {
            string folder = Path.GetFullPath(options.Model ?? StableDiffusionPipeline.DefaultModel);
            if (!IsModelFolder(folder)) throw new InvalidArgumentException("--model", $"{options.Model}: not a model folder (no model_index.json or unet/model.onnx)");
            _single = new ModelEntry(Path.GetFileName(folder.TrimEnd(Path.DirectorySeparatorChar)), folder, options);
        }
    }

    public static bool IsModelFolder(string folder) =>
        File.Exists(Path.Combine(folder, "model_index.json")) || File.Exists(Path.Combine(folder, "unet", "model.onnx"));

    /// <summary>The names served now (with a root: its model subfolders, sorted).</summary>
    public IReadOnlyList<string> Names => _single is not null ? [_single.Name]
        : Directory.EnumerateDirectories(_root!).Where(IsModelFolder).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// The model a request names (null: the only model, or with a root holding several, a 400 listing them). A malformed or
    /// escaping name is 400, an unknown one 404.
    /// </summary>
    public ModelEntry Resolve(string? name)
    {
        if (name is not null) CheckName(name);
        if (_single is not null)
            return name is null || name == _single.Name ? _single
                : throw NotFound(name, [_single.Name]);
        if (name is null)
        {
            var names = Names;
            if (names.Count == 1) name = names[0];
            else throw ApiException.BadRequest($"model: required, this server serves {names.Count} models: {string.Join(", ", names)}");
        }
        string full = Path.GetFullPath(Path.Combine(_root!, name));
        if (!IsUnder(full)) throw ApiException.BadRequest($"model: \"{name}\" is outside the model root");
        if (!Directory.Exists(full) || !IsModelFolder(full)) throw NotFound(name, Names);
        if (new DirectoryInfo(full).ResolveLinkTarget(returnFinalTarget: true) is { } target && !IsUnder(Path.GetFullPath(target.FullName)))
            throw ApiException.BadRequest($"model: \"{name}\" links outside the model root");
        return _entries.GetOrAdd(name, n => new ModelEntry(n, full, _options));
    }

    private bool IsUnder(string full) =>
        full.StartsWith(_root!.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    private static void CheckName(string name)
    {
        if (name.Length == 0 || name.Trim().Length != name.Length || name.Contains('/') || name.Contains('\\') || name.Contains("..")
            || Path.IsPathRooted(name) || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name.Contains(':') || name.Contains('%'))
            throw ApiException.BadRequest($"model: \"{name}\" is not a model name (no path separators, \"..\", \"%\" or rooted paths); see GET /v1/models");
    }

    private static ApiException NotFound(string name, IReadOnlyList<string> names) =>
        new(404, $"model: \"{name}\" is not served here; models: {string.Join(", ", names)}", ApiException.InvalidRequest, "model_not_found");

    public void Dispose()
    {
        _single?.Dispose();
        foreach (var entry in _entries.Values) entry.Dispose();
    }
}

/// <summary>
/// One served model: loaded on first use and kept warm, generating one request at a time (the generator's gate) with
/// at most <see cref="ServerOptions.MaxQueue"/> more waiting; beyond that, 429.
/// </summary>
internal sealed class ModelEntry(string name, string folder, ServerOptions options) : IDisposable
{
    private readonly Lock _loadLock = new();
    private EdgeDiffusionImageGenerator? _generator;
    private int _pending;

    public string Name { get; } = name;

    public string Folder { get; } = folder;

    public bool Loaded => _generator is not null;

    /// <summary>The generator, loading the model the first time (on the caller's thread; a failed load is retried next time).</summary>
    public EdgeDiffusionImageGenerator Generator
    {
        get
        {
            if (_generator is { } g) return g;
            lock (_loadLock)
                return _generator ??= new EdgeDiffusionImageGenerator(Folder, options.Settings);
        }
    }

    /// <summary>Takes a place in this model's queue (running or waiting), or a 429 when it is full; dispose to leave.</summary>
    public IDisposable Enter()
    {
        if (Interlocked.Increment(ref _pending) > 1 + options.MaxQueue)
        {
            Interlocked.Decrement(ref _pending);
            throw new ApiException(429, $"model \"{Name}\" is busy: {options.MaxQueue} requests are already waiting; retry later", "rate_limit_error", "queue_full");
        }
        return new Place(this);
    }

    /// <summary>Maps a request through the generator's own mapping (<see cref="EdgeDiffusionImageGenerator.ToGenerationRequest"/>).</summary>
    public GenerationRequest Map(ServeRequest request)
    {
        var generator = Generator;
        var extra = new AdditionalPropertiesDictionary();
        if (request.NegativePrompt is { } negative) extra["negative_prompt"] = negative;
        if (request.Steps is { } steps) extra["steps"] = steps;
        if (request.Guidance is { } guidance) extra["guidance"] = guidance;
        if (request.Seed is { } seed) extra["seed"] = seed;
        if (request.Scheduler is { } scheduler) extra["scheduler"] = scheduler;
        var size = generator.Pipeline.DefaultSize;
        var options = new ImageGenerationOptions
        {
            Count = request.Count,
            ImageSize = new Size(request.Width ?? size.Width, request.Height ?? size.Height),
            AdditionalProperties = extra,
        };
        try
        {
            return generator.ToGenerationRequest(new ImageGenerationRequest(request.Prompt), options);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message);
        }
    }

    public void Dispose() => _generator?.Dispose();

    private sealed class Place(ModelEntry entry) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) Interlocked.Decrement(ref entry._pending);
        }
    }
}
