using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Serving;

namespace EdgeDiffusion.Tests.Serving;

/// <summary>A server on a free loopback port serving the shipped tiny-shapes model, shared by the tests of a class.</summary>
public sealed class TinyShapesServer : IAsyncLifetime
{
    public static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    public EdgeDiffusionServer Server { get; private set; } = null!;

    public HttpClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await EdgeDiffusionServer.StartAsync(new ServerOptions { Model = Model, Port = 0 });
        Client = new HttpClient { BaseAddress = Server.Address, Timeout = TimeSpan.FromSeconds(120) };
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }
}

public sealed class ServerTests(TinyShapesServer fixture) : IClassFixture<TinyShapesServer>
{
    private const string Caption = "a red circle on a blue background";
    private readonly HttpClient _client = fixture.Client;
    private static readonly HeldOutSet Set = HeldOutSet.Load(Path.Combine(TinyShapesServer.Model, "evaluation", "heldout.json"));

    internal static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    private static void AssertShowsCaption(string base64, string? parameters = null)
    {
        byte[] png = Convert.FromBase64String(base64);
        var image = RgbaImage.Decode(png);
        Assert.Equal((64, 64), (image.Width, image.Height));
        string text = PngText.Parse(png).Single(t => t.Keyword == PngWriter.ParametersKeyword).Text;
        Assert.StartsWith(Caption + "\n", text);
        if (parameters is not null) Assert.Contains(parameters, text);
        var reading = new ShapeClassifier(Set.Palette).Read(image.Pixels, image.Width, image.Height);
        Assert.Equal(("blue", "red"), (reading.Background, reading.Color));
    }

    [Fact]
    public async Task OpenAiImagesReturnPngsShowingTheCaptionsColours()
    {
        using var response = await _client.PostAsync("/v1/images/generations",
            Body($$"""{"prompt": "{{Caption}}", "n": 2, "size": "64x64", "response_format": "b64_json", "model": "tiny-shapes", "seed": 7}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.True(json.RootElement.GetProperty("created").GetInt64() > 0);
        var data = json.RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        AssertShowsCaption(data[0].GetProperty("b64_json").GetString()!, "Seed: 7,");
        AssertShowsCaption(data[1].GetProperty("b64_json").GetString()!, "Seed: 8,");
    }

    [Fact]
    public async Task A1111Txt2ImgReturnsImagesParametersAndInfo()
    {
        using var response = await _client.PostAsync("/sdapi/v1/txt2img", Body($$"""
            {"prompt": "{{Caption}}", "negative_prompt": "", "steps": 12, "cfg_scale": 3, "width": 64, "height": 64, "seed": 5,
             "sampler_name": "Euler a", "batch_size": 2}
            """));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var images = json.RootElement.GetProperty("images");
        Assert.Equal(2, images.GetArrayLength());
        foreach (var image in images.EnumerateArray()) AssertShowsCaption(image.GetString()!, "Steps: 12, Sampler: euler-a, CFG scale: 3");
        var parameters = json.RootElement.GetProperty("parameters");
        Assert.Equal((12, 5UL, "euler-a"), (parameters.GetProperty("steps").GetInt32(), parameters.GetProperty("seed").GetUInt64(), parameters.GetProperty("sampler_name").GetString()));
        using var info = JsonDocument.Parse(json.RootElement.GetProperty("info").GetString()!);
        Assert.Equal([5UL, 6UL], info.RootElement.GetProperty("all_seeds").EnumerateArray().Select(e => e.GetUInt64()));
        Assert.Equal(2, info.RootElement.GetProperty("infotexts").GetArrayLength());
    }

    [Fact]
    public async Task ARandomSeedIsReportedInInfo()
    {
        using var response = await _client.PostAsync("/sdapi/v1/txt2img", Body($$"""{"prompt": "{{Caption}}", "steps": 4, "seed": -1}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        using var info = JsonDocument.Parse(json.RootElement.GetProperty("info").GetString()!);
        ulong seed = info.RootElement.GetProperty("seed").GetUInt64();
        Assert.Contains($"Seed: {seed},", info.RootElement.GetProperty("infotexts")[0].GetString());
    }

    [Fact]
    public async Task HealthAndModels()
    {
        using var health = JsonDocument.Parse(await _client.GetStringAsync("/health"));
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
        using var models = JsonDocument.Parse(await _client.GetStringAsync("/v1/models"));
        Assert.Equal(["tiny-shapes"], models.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync("/v1/models/tiny-shapes")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync("/v1/models/other")).StatusCode);
    }

    [Fact]
    public async Task ConcurrentRequestsAllSucceed()
    {
        var tasks = Enumerable.Range(0, 6).Select(async i =>
        {
            using var response = await _client.PostAsync(i % 2 == 0 ? "/v1/images/generations" : "/sdapi/v1/txt2img",
                Body($$"""{"prompt": "{{Caption}}", "steps": 6, "seed": {{i}}}"""));
            return response.StatusCode;
        }).ToArray();
        Assert.All(await Task.WhenAll(tasks), s => Assert.Equal(HttpStatusCode.OK, s));
    }

    [Fact]
    public async Task AClientThatDisconnectsCancelsItsGeneration()
    {
        var stats = fixture.Server.Statistics;
        long cancelled = stats.Cancelled, started = stats.Started;
        using var cts = new CancellationTokenSource();
        var request = _client.PostAsync("/v1/images/generations", Body($$"""{"prompt": "{{Caption}}", "steps": 150, "n": 8}"""), cts.Token);
        var sw = Stopwatch.StartNew();
        while (stats.Started == started && sw.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(20);
        Assert.True(stats.Started > started, "the generation never started");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        sw.Restart();
        while (stats.Cancelled == cancelled && sw.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(20);
        Assert.True(stats.Cancelled > cancelled, "the server did not cancel the job");

        // The model is free again: a short request is served at once.
        sw.Restart();
        using var next = await _client.PostAsync("/v1/images/generations", Body($$"""{"prompt": "{{Caption}}", "steps": 4}"""));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"the next request took {sw.Elapsed}");
    }

    [Fact]
    public async Task JobEventsStreamProgressThenDone()
    {
        using var created = await _client.PostAsync("/v1/jobs", Body($$"""{"prompt": "{{Caption}}", "steps": 10, "seed": 3}"""));
        Assert.Equal(HttpStatusCode.Accepted, created.StatusCode);
        using var job = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        string id = job.RootElement.GetProperty("id").GetString()!;

        using var events = await _client.GetAsync($"/v1/jobs/{id}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", events.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await events.Content.ReadAsStreamAsync());
        var received = new List<(string Event, string Data)>();
        string? name = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) received.Add((name!, line[6..]));
        }
        Assert.Equal("done", received[^1].Event);
        var progress = received.SkipLast(1).ToList();
        Assert.All(progress, e => Assert.Equal("progress", e.Event));
        Assert.Equal(Enumerable.Range(1, 10), progress.Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("step").GetInt32()));
        Assert.All(progress, e => Assert.Equal(10, JsonDocument.Parse(e.Data).RootElement.GetProperty("total").GetInt32()));
        using var done = JsonDocument.Parse(received[^1].Data);
        AssertShowsCaption(done.RootElement.GetProperty("data")[0].GetProperty("b64_json").GetString()!, "Seed: 3,");
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/v1/jobs/{id}/events")).StatusCode);
    }

    [Theory]
    [InlineData("/v1/images/generations", """{"prompt": "x", "model": "../x"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "model": "..%2Fx"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "model": "/etc"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "model": "..\\x"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "model": "other"}""", 404)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "override_settings": {"sd_model_checkpoint": "../../etc"}}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "response_format": "url"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "size": "-64x64"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "size": "4096x4096"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "size": "60x64"}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "n": 9}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", "n": "2"}""", 400)]
    [InlineData("/v1/images/generations", """{"n": 1}""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": 5}""", 400)]
    [InlineData("/v1/images/generations", """[1, 2]""", 400)]
    [InlineData("/v1/images/generations", """{"prompt": "x", """, 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "steps": "abc"}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "steps": 0}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "steps": 151}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "steps": 1.5}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "width": -64}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "width": 99999999999}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "height": 2056}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "batch_size": 0}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "seed": -2}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "cfg_scale": "high"}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "sampler_name": "Heun++ 9"}""", 400)]
    [InlineData("/sdapi/v1/txt2img", """not json""", 400)]
    [InlineData("/v1/jobs", """{"prompt": "x", "steps": "abc"}""", 400)]
    public async Task HostileRequestsAreRefusedWithAJsonError(string path, string body, int status)
    {
        using var response = await _client.PostAsync(path, Body(body));
        Assert.Equal(status, (int)response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("invalid_request_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("error").GetProperty("message").GetString()));
    }

    [Fact]
    public async Task ALongPromptIsRefused()
    {
        using var response = await _client.PostAsync("/v1/images/generations", Body($$"""{"prompt": "{{new string('a', 1001)}}"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("at most 1000", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task AHugeBodyIsRefusedWith413()
    {
        string huge = $$"""{"prompt": "x", "pad": "{{new string('a', 2 << 20)}}"}""";
        using var response = await _client.PostAsync("/v1/images/generations", Body(huge));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Theory]
    [InlineData("/v1/models/..%2Fx")]
    [InlineData("/v1/models/%2Fetc")]
    [InlineData("/v1/models/..%5Cx")]
    public async Task TraversalInTheUrlIsRefused(string path)
    {
        using var response = await _client.GetAsync(path);
        Assert.True(response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, $"{path}: {response.StatusCode}");
    }

    [Theory]
    [InlineData("Euler", "euler")]
    [InlineData("Euler a", "euler-a")]
    [InlineData("DDIM", "ddim")]
    [InlineData("DPM++ 2M", "dpm++2m")]
    [InlineData("DPM++ 2M Karras", "dpm++2m-karras")]
    [InlineData("LCM", "lcm")]
    [InlineData("PLMS", "pndm")]
    [InlineData("PNDM", "pndm")]
    public void A1111SamplerNamesMapToSchedulers(string sampler, string scheduler)
    {
        using var body = JsonDocument.Parse($$"""{"prompt": "x", "sampler_name": "{{sampler}}"}""");
        Assert.Equal(scheduler, ServeRequest.FromA1111(body.RootElement, new ServerOptions()).Scheduler);
        Assert.Contains(scheduler, EdgeDiffusion.Schedulers.SchedulerFactory.Names);
    }
}
