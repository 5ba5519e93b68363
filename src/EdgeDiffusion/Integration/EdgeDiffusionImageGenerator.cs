// IImageGenerator and its request/response types are experimental in Microsoft.Extensions.AI 11 (MEAI001).
#pragma warning disable MEAI001

using System.Globalization;
using System.Text.Json;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Schedulers;
using Microsoft.Extensions.AI;

namespace EdgeDiffusion.Integration;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IImageGenerator"/> over a <see cref="StableDiffusionPipeline"/>: text-to-image
/// on the device, each picture returned as PNG <see cref="DataContent"/> (media type image/png) carrying the
/// generation parameters in its "parameters" text chunk, as <c>edgediff generate</c> writes them.
/// <para>Request mapping:</para>
/// <list type="bullet">
/// <item><see cref="ImageGenerationRequest.Prompt"/> → the prompt (required); <see cref="ImageGenerationRequest.OriginalImages"/>
/// (image editing) is not supported.</item>
/// <item><see cref="ImageGenerationOptions.Count"/> → images (default 1; image i uses seed + i);
/// <see cref="ImageGenerationOptions.ImageSize"/> → width × height (multiples of 8; default the model's size);
/// <see cref="ImageGenerationOptions.MediaType"/> must be null or image/png; <see cref="ImageGenerationOptions.ResponseFormat"/>
/// null, Data or Uri (a data: URI, <see cref="DataContent.Uri"/>), not Hosted. ModelId and StreamingCount are ignored.</item>
/// <item><see cref="ImageGenerationOptions.AdditionalProperties"/> (numbers or strings, or JSON elements holding them):
/// <c>steps</c>, <c>guidance</c>, <c>seed</c> (default: a random seed in [0, 2³² − 1], reported on each content's
/// AdditionalProperties["seed"] and in its PNG parameters), <c>scheduler</c> (<see cref="SchedulerFactory.Names"/>, default
/// the model's), <c>negative_prompt</c>, <c>rng</c> (<see cref="NoiseSources.Names"/>). Other keys are ignored. A value
/// that does not parse, or a request <see cref="GenerationRequest.Validate"/> rejects, is an
/// <see cref="ArgumentException"/> whose message and ParamName name the property.</item>
/// </list>
/// Generation runs on a thread-pool thread, one request at a time per generator (later ones wait), and honours the
/// cancellation token while waiting and between denoising steps (<see cref="OperationCanceledException"/>).
/// <see cref="ImageGenerationResponse.RawRepresentation"/> is the <see cref="GenerationResult"/>.
/// </summary>
public sealed class EdgeDiffusionImageGenerator : IImageGenerator
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly bool _ownsPipeline;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    /// <summary>
    /// Wraps a loaded pipeline, which stays the caller's to dispose. <paramref name="defaultGuidance"/> is used when a
    /// request gives no "guidance" (default <see cref="GenerationRequest.DefaultGuidance"/>; pass
    /// <see cref="StableDiffusionPipeline.ConfiguredGuidance"/> of the model folder to use the model's own).
    /// </summary>
    public EdgeDiffusionImageGenerator(StableDiffusionPipeline pipeline, double? defaultGuidance = null)
        : this(pipeline ?? throw new ArgumentNullException(nameof(pipeline)), ownsPipeline: false, defaultGuidance ?? GenerationRequest.DefaultGuidance)
    {
    }

    /// <summary>
    /// Loads the model folder (<see cref="StableDiffusionPipeline.Load"/>) and owns the pipeline: disposing the generator
    /// disposes it. The default guidance is the folder's own (model_index.json), else <see cref="GenerationRequest.DefaultGuidance"/>.
    /// </summary>
    public EdgeDiffusionImageGenerator(string modelFolder, SessionSettings? settings = null)
        : this(StableDiffusionPipeline.Load(modelFolder ?? throw new ArgumentNullException(nameof(modelFolder)), settings), ownsPipeline: true,
            StableDiffusionPipeline.ConfiguredGuidance(modelFolder) ?? GenerationRequest.DefaultGuidance)
    {
    }

    private EdgeDiffusionImageGenerator(StableDiffusionPipeline pipeline, bool ownsPipeline, double defaultGuidance)
    {
        _pipeline = pipeline;
        _ownsPipeline = ownsPipeline;
        DefaultGuidance = defaultGuidance;
        Metadata = new ImageGeneratorMetadata("edgediffusion", providerUri: null, defaultModelId: pipeline.Name);
    }

    /// <summary>The guidance scale used when a request gives none.</summary>
    public double DefaultGuidance { get; }

    public ImageGeneratorMetadata Metadata { get; }

    /// <summary>The pipeline this generator runs.</summary>
    public StableDiffusionPipeline Pipeline => _pipeline;

    public async Task<ImageGenerationResponse> GenerateAsync(ImageGenerationRequest request, ImageGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var generation = ToGenerationRequest(request, options);
        return await GenerateAsync(generation, progress: null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs an already mapped request (<see cref="ToGenerationRequest"/>), reporting each denoising step to
    /// <paramref name="progress"/> (called on the generating thread): the same queueing (one at a time per generator),
    /// cancellation and PNG contents as <see cref="GenerateAsync(ImageGenerationRequest, ImageGenerationOptions?, CancellationToken)"/>.
    /// The local server (EdgeDiffusion.Serving) runs its requests through this.
    /// </summary>
    public async Task<ImageGenerationResponse> GenerateAsync(GenerationRequest generation, Action<GenerationProgress>? progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generation);
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var result = await Task.Run(() => _pipeline.Generate(generation, progress, cancellationToken), cancellationToken).ConfigureAwait(false);
            var contents = new List<AIContent>(result.Images.Count);
            for (int i = 0; i < result.Images.Count; i++) contents.Add(ToPng(generation, result, i));
            return new ImageGenerationResponse(contents) { RawRepresentation = result };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The <see cref="GenerationRequest"/> a call maps to (see the class remarks), validated; the seed is drawn at random
    /// when the options give none.
    /// </summary>
    public GenerationRequest ToGenerationRequest(ImageGenerationRequest request, ImageGenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (string.IsNullOrWhiteSpace(request.Prompt))
            throw new ArgumentException("the request has no prompt; set ImageGenerationRequest.Prompt", nameof(request));
        if (request.OriginalImages?.Any() == true)
            throw new NotSupportedException("EdgeDiffusionImageGenerator generates from text only; image editing (OriginalImages) is not supported");
        if (options?.MediaType is { } mediaType && !string.Equals(mediaType, "image/png", StringComparison.OrdinalIgnoreCase))
            throw new NotSupportedException($"MediaType \"{mediaType}\" is not supported; EdgeDiffusionImageGenerator returns image/png");
        if (options?.ResponseFormat == ImageGenerationResponseFormat.Hosted)
            throw new NotSupportedException("ResponseFormat Hosted is not supported; pictures are returned as data (DataContent, whose Uri is a data: URI)");

        var extra = options?.AdditionalProperties;
        var size = options?.ImageSize;
        var generation = new GenerationRequest
        {
            Prompt = request.Prompt,
            NegativePrompt = String(extra, "negative_prompt") ?? "",
            Steps = Integer(extra, "steps") ?? 20,
            Guidance = Number(extra, "guidance") ?? DefaultGuidance,
            Scheduler = String(extra, "scheduler"),
            Noise = String(extra, "rng") ?? NoiseSources.Default,
            Seed = UnsignedInteger(extra, "seed") ?? (ulong)Random.Shared.NextInt64(0, 1L << 32),
            Width = size?.Width ?? _pipeline.DefaultSize.Width,
            Height = size?.Height ?? _pipeline.DefaultSize.Height,
            Count = options?.Count ?? 1,
        };
        try
        {
            generation.Validate();
        }
        catch (InvalidArgumentException e)
        {
            string property = e.Argument switch
            {
                "--width" or "--height" => "ImageSize",
                "--count" => "Count",
                "--negative-prompt" => "negative_prompt",
                var option => option.TrimStart('-'),
            };
            string problem = e.Message.StartsWith(e.Argument + ": ", StringComparison.Ordinal) ? e.Message[(e.Argument.Length + 2)..] : e.Message;
            throw new ArgumentException($"{property}: {problem}", property, e);
        }
        return generation;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ImageGeneratorMetadata)) return Metadata;
        if (serviceType == typeof(StableDiffusionPipeline)) return _pipeline;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_ownsPipeline) _pipeline.Dispose();
        _gate.Dispose();
    }

    private DataContent ToPng(GenerationRequest request, GenerationResult result, int index)
    {
        ulong seed = result.Seeds[index];
        var parameters = (result with { Request = result.Request ?? request, Model = _pipeline.Name }).Parameters(index);
        return new DataContent(PngWriter.Encode(result.Image(index), parameters), "image/png")
        {
            Name = string.Create(CultureInfo.InvariantCulture, $"edgediff-{seed}.png"),
            AdditionalProperties = new AdditionalPropertiesDictionary { ["seed"] = seed },
        };
    }

    private static string? String(AdditionalPropertiesDictionary? extra, string key) => Value(extra, key) switch
    {
        null => null,
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } j => j.GetString(),
        var other => throw Bad(key, other, "a string"),
    };

    private static int? Integer(AdditionalPropertiesDictionary? extra, string key) =>
        Parse<int>(extra, key, "an integer", s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null);

    private static ulong? UnsignedInteger(AdditionalPropertiesDictionary? extra, string key) =>
        Parse<ulong>(extra, key, "an integer from 0 to 18446744073709551615", s => ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) ? v : null);

    private static double? Number(AdditionalPropertiesDictionary? extra, string key) =>
        Parse<double>(extra, key, "a number", s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) ? v : null);

    /// <summary>A numeric property: numbers and strings (and JSON elements of either) go through their invariant text.</summary>
    private static T? Parse<T>(AdditionalPropertiesDictionary? extra, string key, string expected, Func<string, T?> parse) where T : struct
    {
        object? value = Value(extra, key);
        if (value is null) return null;
        string? text = value switch
        {
            string s => s.Trim(),
            JsonElement { ValueKind: JsonValueKind.Number } j => j.GetRawText(),
            JsonElement { ValueKind: JsonValueKind.String } j => j.GetString()?.Trim(),
            sbyte or byte or short or ushort or int or uint or long or ulong or float or double or decimal => ((IFormattable)value).ToString(null, CultureInfo.InvariantCulture),
            _ => null,
        };
        return (text is null ? null : parse(text)) ?? throw Bad(key, value, expected);
    }

    private static object? Value(AdditionalPropertiesDictionary? extra, string key) =>
        extra is not null && extra.TryGetValue(key, out object? value) && value is not JsonElement { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } ? value : null;

    private static ArgumentException Bad(string key, object value, string expected) =>
        new($"{key}: {Describe(value)} is not {expected} (ImageGenerationOptions.AdditionalProperties[\"{key}\"])", key);

    private static string Describe(object value) => value switch
    {
        string s => $"\"{s}\"",
        JsonElement j => j.GetRawText(),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.GetType().Name,
    };
}
