// IImageGenerator's response types are experimental in Microsoft.Extensions.AI 11 (MEAI001).
#pragma warning disable MEAI001

using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using EdgeDiffusion.Pipelines;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeDiffusion.Serving;

/// <summary>Counts of what the server did, for tests, benchmarks and GET /health.</summary>
public sealed class ServerStatistics
{
    internal long _completed, _cancelled, _failed, _rejected, _started;

    /// <summary>Generations that finished and were answered.</summary>
    public long Completed => Interlocked.Read(ref _completed);
    /// <summary>Generations stopped because the client went away (or the job was deleted), while waiting or between steps.</summary>
    public long Cancelled => Interlocked.Read(ref _cancelled);
    /// <summary>Generations that failed with an error.</summary>
    public long Failed => Interlocked.Read(ref _failed);
    /// <summary>Requests answered 429 because the model's queue was full.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);
    /// <summary>Generations that started running (left the queue).</summary>
    public long Started => Interlocked.Read(ref _started);
}

/// <summary>
/// A local HTTP server for the models of a folder (ASP.NET Core minimal API on Kestrel), loopback by default:
/// <list type="bullet">
/// <item><c>POST /v1/images/generations</c>: OpenAI's images API (prompt, n, size, response_format b64_json, model).</item>
/// <item><c>POST /sdapi/v1/txt2img</c>: AUTOMATIC1111's (prompt, negative_prompt, steps, cfg_scale, width, height, seed, sampler_name, batch_size).</item>
/// <item><c>POST /v1/jobs</c> (an OpenAI-shaped body) → <c>{"id"}</c>; <c>GET /v1/jobs/{id}/events</c>: server-sent events
/// <c>progress</c> ({"step","total"}) then <c>done</c> (the images response) or <c>error</c>; <c>DELETE /v1/jobs/{id}</c> cancels.</item>
/// <item><c>GET /health</c>, <c>GET /v1/models</c>, <c>GET /v1/models/{name}</c>.</item>
/// </list>
/// Each model is loaded on first use and kept warm; it generates one request at a time with a bounded queue (429 when
/// full). A client that disconnects cancels its generation. Errors are <c>{"error": {"message", "type"}}</c>.
/// </summary>
public sealed class EdgeDiffusionServer : IAsyncDisposable
{
    // Relaxed escaping: base64 "+" and quotes in messages stay readable (the answers are application/json, never HTML).
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };
    private readonly WebApplication _app;
    private readonly ModelCatalog _catalog;
    private readonly ServerOptions _options;
    private readonly ConcurrentDictionary<string, Job> _jobs = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();

    private EdgeDiffusionServer(ServerOptions options)
    {
        _options = options;
        if (options.MaxQueue < 0) throw new InvalidArgumentException("--max-queue", $"{options.MaxQueue} is negative; use 0 or more");
        if (options.Port is < 0 or > 65535) throw new InvalidArgumentException("--port", $"{options.Port} is out of range; use 0 (any free port) to 65535");
        IPAddress address = options.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(options.Host, out var ip) ? ip
            : throw new InvalidArgumentException("--host", $"\"{options.Host}\" is not an IP address; use 127.0.0.1 (the default), ::1 or 0.0.0.0");
        _catalog = new ModelCatalog(options);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            k.Limits.MinRequestBodyDataRate = new MinDataRate(options.MinBodyBytesPerSecond, options.SlowBodyGracePeriod);
            k.Limits.RequestHeadersTimeout = options.RequestHeadersTimeout;
            k.Listen(address, options.Port);
        });
        _app = builder.Build();
        Map(_app);
    }

    /// <summary>Checks the options, opens the model catalog (models load on first use) and starts listening.</summary>
    public static async Task<EdgeDiffusionServer> StartAsync(ServerOptions options, CancellationToken cancellationToken = default)
    {
        var server = new EdgeDiffusionServer(options);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw new InvalidArgumentException("--port", $"cannot listen on {options.Host}:{options.Port}: {e.Message}");
        }
        return server;
    }

    /// <summary>The address it listens on, with the actual port (e.g. http://127.0.0.1:7860).</summary>
    public Uri Address => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    public ServerStatistics Statistics { get; } = new();

    /// <summary>The names of the models served.</summary>
    public IReadOnlyList<string> Models => _catalog.Names;

    /// <summary>Completes when the server stops (Ctrl+C, SIGTERM, or <see cref="DisposeAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        try { await _app.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); } catch (InvalidOperationException) { }
        await _app.DisposeAsync().ConfigureAwait(false);
        _catalog.Dispose();
        _stopping.Dispose();
    }

    private void Map(WebApplication app)
    {
        app.MapGet("/health", () => Results.Json(new
        {
            status = "ok",
            models = _catalog.Names,
            completed = Statistics.Completed, cancelled = Statistics.Cancelled, failed = Statistics.Failed, rejected = Statistics.Rejected,
        }, Json));
        app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = _catalog.Names.Select(ModelInfo) }, Json));
        app.MapGet("/v1/models/{name}", (string name) => Handle(() => Results.Json(ModelInfo(_catalog.Resolve(name).Name), Json)));
        app.MapPost("/v1/images/generations", (Func<HttpContext, Task<IResult>>)(http => HandleAsync(http, async body =>
        {
            var request = ServeRequest.FromOpenAi(body, _options);
            var (_, response) = await RunAsync(request, null, http.RequestAborted).ConfigureAwait(false);
            return Results.Json(OpenAiResponse(response), Json);
        })));
        app.MapPost("/sdapi/v1/txt2img", (Func<HttpContext, Task<IResult>>)(http => HandleAsync(http, async body =>
        {
            var request = ServeRequest.FromA1111(body, _options);
            var (generation, response) = await RunAsync(request, null, http.RequestAborted).ConfigureAwait(false);
            return Results.Json(A1111Response(generation, response), Json);
        })));
        app.MapPost("/v1/jobs", (Func<HttpContext, Task<IResult>>)(http => HandleAsync(http, body =>
        {
            var request = ServeRequest.FromOpenAi(body, _options);
            var entry = _catalog.Resolve(request.Model);
            var place = entry.Enter();
            var job = new Job(Guid.NewGuid().ToString("N"), CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token));
            _jobs[job.Id] = job;
            job.Task = Task.Run(() => RunJobAsync(job, entry, place, request));
            return Task.FromResult(Results.Json(new { id = job.Id, @object = "job", events = $"/v1/jobs/{job.Id}/events" }, Json, statusCode: 202));
        })));
        app.MapGet("/v1/jobs/{id}/events", StreamJobAsync);
        app.MapDelete("/v1/jobs/{id}", (string id) =>
        {
            if (!_jobs.TryGetValue(id, out var job)) return Error(new ApiException(404, $"job \"{id}\" not found", ApiException.InvalidRequest, "job_not_found"));
            job.Cancellation.Cancel();
            return Results.Json(new { id, @object = "job", cancelled = true }, Json);
        });
    }

    private static object ModelInfo(string name) => new { id = name, @object = "model", owned_by = "edgediffusion" };

    /// <summary>Runs one request on its model: a place in the queue (or 429), the mapping, the generation.</summary>
    private async Task<(GenerationRequest, ImageGenerationResponse)> RunAsync(ServeRequest request, Action<GenerationProgress>? progress, CancellationToken cancellation)
    {
        var entry = _catalog.Resolve(request.Model);
        using var place = entry.Enter();
        return await GenerateAsync(entry, request, progress, cancellation).ConfigureAwait(false);
    }

    private async Task<(GenerationRequest, ImageGenerationResponse)> GenerateAsync(ModelEntry entry, ServeRequest request, Action<GenerationProgress>? progress, CancellationToken cancellation)
    {
        try
        {
            var generation = await Task.Run(() => entry.Map(request), cancellation).ConfigureAwait(false);
            bool started = false;
            var response = await entry.Generator.GenerateAsync(generation, p =>
            {
                if (!started) { started = true; Interlocked.Increment(ref Statistics._started); }
                progress?.Invoke(p);
            }, cancellation).ConfigureAwait(false);
            Interlocked.Increment(ref Statistics._completed);
            return (generation, response);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            Interlocked.Increment(ref Statistics._cancelled);
            throw;
        }
        catch (ApiException)
        {
            throw;
        }
        catch (EdgeDiffusionException e)
        {
            Interlocked.Increment(ref Statistics._failed);
            throw ApiException.BadRequest(e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Interlocked.Increment(ref Statistics._failed);
            throw new ApiException(500, $"generation failed: {e.Message}", "server_error");
        }
    }

    private static object OpenAiResponse(ImageGenerationResponse response) => new
    {
        created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        data = response.Contents.OfType<DataContent>().Select(c => new { b64_json = Convert.ToBase64String(c.Data.Span) }),
    };

    private static object A1111Response(GenerationRequest generation, ImageGenerationResponse response)
    {
        var result = (GenerationResult)response.RawRepresentation!;
        var infotexts = Enumerable.Range(0, result.Images.Count).Select(i => result.Parameters(i).ToParametersText()).ToList();
        var info = new
        {
            prompt = generation.Prompt, negative_prompt = generation.NegativePrompt, seed = result.Seeds[0], all_seeds = result.Seeds,
            steps = generation.Steps, cfg_scale = result.Guidance, sampler_name = result.Scheduler, width = result.Width, height = result.Height,
            batch_size = result.Images.Count, sd_model_name = result.Model, infotexts,
        };
        return new
        {
            images = response.Contents.OfType<DataContent>().Select(c => Convert.ToBase64String(c.Data.Span)),
            parameters = new
            {
                prompt = generation.Prompt, negative_prompt = generation.NegativePrompt, steps = generation.Steps, cfg_scale = result.Guidance,
                width = result.Width, height = result.Height, seed = result.Seeds[0], sampler_name = result.Scheduler, batch_size = result.Images.Count,
            },
            info = JsonSerializer.Serialize(info, Json),
        };
    }

    private async Task RunJobAsync(Job job, ModelEntry entry, IDisposable place, ServeRequest request)
    {
        try
        {
            using (place)
            {
                var (_, response) = await GenerateAsync(entry, request, p =>
                    job.Events.Writer.TryWrite(("progress", JsonSerializer.Serialize(new { step = p.Step, total = p.TotalSteps }, Json))), job.Cancellation.Token).ConfigureAwait(false);
                job.Events.Writer.TryWrite(("done", JsonSerializer.Serialize(OpenAiResponse(response), Json)));
            }
        }
        catch (OperationCanceledException)
        {
            job.Events.Writer.TryWrite(("error", JsonSerializer.Serialize(ApiException.Body("the job was cancelled", "cancelled"), Json)));
        }
        catch (ApiException e)
        {
            job.Events.Writer.TryWrite(("error", JsonSerializer.Serialize(ApiException.Body(e.Message, e.Type, e.Code), Json)));
        }
        finally
        {
            job.Events.Writer.TryComplete();
            // An unread job is forgotten after a while; a read one when its stream ends.
            _ = Task.Delay(TimeSpan.FromMinutes(5), _stopping.Token).ContinueWith(_ => Forget(job.Id), TaskScheduler.Default);
        }
    }

    private void Forget(string id)
    {
        if (_jobs.TryRemove(id, out var job)) job.Cancellation.Dispose();
    }

    private async Task StreamJobAsync(HttpContext http, string id)
    {
        if (!_jobs.TryGetValue(id, out var job) || Interlocked.Exchange(ref job.Readers, 1) != 0)
        {
            await Error(new ApiException(404, $"job \"{id}\" not found (or its events are already being read)", ApiException.InvalidRequest, "job_not_found")).ExecuteAsync(http).ConfigureAwait(false);
            return;
        }
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        try
        {
            await foreach (var (name, data) in job.Events.Reader.ReadAllAsync(http.RequestAborted).ConfigureAwait(false))
            {
                await http.Response.WriteAsync($"event: {name}\ndata: {data}\n\n", http.RequestAborted).ConfigureAwait(false);
                await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
            }
            await job.Task!.ConfigureAwait(false);
            Forget(id);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The reader went away: its job is cancelled.
            try { job.Cancellation.Cancel(); } catch (ObjectDisposedException) { }
        }
    }

    private static IResult Handle(Func<IResult> body)
    {
        try { return body(); }
        catch (ApiException e) { return Error(e); }
    }

    /// <summary>Reads the JSON body (invalid JSON, too large, too slow: errors) and runs an endpoint, turning refusals into JSON errors.</summary>
    private async Task<IResult> HandleAsync(HttpContext http, Func<JsonElement, Task<IResult>> body)
    {
        try
        {
            JsonElement root;
            try
            {
                using var document = await JsonDocument.ParseAsync(http.Request.Body, new JsonDocumentOptions { MaxDepth = 16 }, http.RequestAborted).ConfigureAwait(false);
                root = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}");
            }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
            {
                throw new ApiException(e.StatusCode, e.StatusCode == 413
                    ? $"the request body is larger than {_options.MaxRequestBodyBytes} bytes" : $"the request body could not be read: {e.Message}");
            }
            return await body(root).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            if (e.StatusCode == 429) Interlocked.Increment(ref Statistics._rejected);
            return Error(e);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            return Results.Empty; // the client is gone; nobody reads the answer
        }
    }

    private static IResult Error(ApiException e) => Results.Json(ApiException.Body(e.Message, e.Type, e.Code), Json, statusCode: e.StatusCode);

    private sealed class Job(string id, CancellationTokenSource cancellation)
    {
        public string Id { get; } = id;
        public CancellationTokenSource Cancellation { get; } = cancellation;
        public System.Threading.Channels.Channel<(string Name, string Data)> Events { get; } =
            System.Threading.Channels.Channel.CreateUnbounded<(string, string)>(new() { SingleReader = true });
        public Task? Task { get; set; }
        public int Readers;
    }
}
