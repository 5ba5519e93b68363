using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeDiffusion.Serving;

namespace EdgeDiffusion.Tests.Serving;

/// <summary>Servers started per test with their own limits: queue length, slow clients, a models root.</summary>
public sealed class ServerLimitsTests
{
    private const string Caption = "a red circle on a blue background";

    [Fact]
    public async Task AFullQueueIsAnswered429WithAJsonError()
    {
        await using var server = await EdgeDiffusionServer.StartAsync(new ServerOptions { Model = TinyShapesServer.Model, Port = 0, MaxQueue = 1 });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(120) };
        var tasks = Enumerable.Range(0, 5).Select(async _ =>
        {
            using var response = await client.PostAsync("/v1/images/generations", ServerTests.Body($$"""{"prompt": "{{Caption}}", "steps": 60, "n": 2}"""));
            return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
        }).ToArray();
        var results = await Task.WhenAll(tasks);
        var busy = results.Where(r => r.Item1 == 429).ToList();
        Assert.Equal(2, results.Count(r => r.Item1 == 200));
        Assert.Equal(3, busy.Count);
        using var error = JsonDocument.Parse(busy[0].Item2);
        Assert.Equal("rate_limit_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(3, server.Statistics.Rejected);
    }

    [Fact]
    public async Task ASlowClientDoesNotHoldUpOthersAndIsDisconnected()
    {
        await using var server = await EdgeDiffusionServer.StartAsync(new ServerOptions
        {
            Model = TinyShapesServer.Model, Port = 0, MinBodyBytesPerSecond = 100, SlowBodyGracePeriod = TimeSpan.FromSeconds(2),
        });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };

        using var slow = new TcpClient();
        await slow.ConnectAsync(server.Address.Host, server.Address.Port);
        var stream = slow.GetStream();
        string body = $$"""{"prompt": "{{Caption}}", "steps": 4}""" + new string(' ', 400);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n"));
        var sw = Stopwatch.StartNew();
        var dribble = Task.Run(async () =>
        {
            try
            {
                for (int i = 0; i < body.Length; i++)
                {
                    await stream.WriteAsync(Encoding.ASCII.GetBytes(body[i..(i + 1)]));
                    await Task.Delay(250);
                }
            }
            catch (IOException) { }
            catch (ObjectDisposedException) { }
        });

        // Others are served meanwhile.
        await Task.Delay(300);
        var other = Stopwatch.StartNew();
        using (var response = await client.PostAsync("/v1/images/generations", ServerTests.Body($$"""{"prompt": "{{Caption}}", "steps": 4}""")))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(other.Elapsed < TimeSpan.FromSeconds(15), $"another request took {other.Elapsed} behind the slow one");

        // The slow one is cut off after the grace period (an error response, then the connection closes).
        var buffer = new byte[4096];
        var received = new StringBuilder();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0) received.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
        catch (IOException) { }
        Assert.False(timeout.IsCancellationRequested, "the slow client was never disconnected");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(body.Length * 0.25), $"closed only after {sw.Elapsed}");
        Assert.DoesNotContain("200 OK", received.ToString());
        slow.Close();
        await dribble;
    }

    [Fact]
    public async Task AModelsRootServesItsModelFoldersAndConfinesNames()
    {
        string root = TestData.NewTempDir("edgediff-serve-root");
        string outside = TestData.NewTempDir("edgediff-serve-outside");
        try
        {
            // root/tiny: a model folder whose components link to the shipped model; root/escape: a link to a folder outside.
            string tiny = Directory.CreateDirectory(Path.Combine(root, "tiny")).FullName;
            foreach (var entry in new DirectoryInfo(TinyShapesServer.Model).EnumerateFileSystemInfos())
                if (entry is DirectoryInfo) Directory.CreateSymbolicLink(Path.Combine(tiny, entry.Name), entry.FullName);
                else File.CreateSymbolicLink(Path.Combine(tiny, entry.Name), entry.FullName);
            File.WriteAllText(Path.Combine(outside, "model_index.json"), "{}");
            Directory.CreateSymbolicLink(Path.Combine(root, "escape"), outside);
            Directory.CreateDirectory(Path.Combine(root, "not-a-model"));

            await using var server = await EdgeDiffusionServer.StartAsync(new ServerOptions { ModelsRoot = root, Port = 0 });
            using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
            using var models = JsonDocument.Parse(await client.GetStringAsync("/v1/models"));
            Assert.Equal(["escape", "tiny"], models.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));

            async Task<int> Status(string model)
            {
                using var response = await client.PostAsync("/v1/images/generations", ServerTests.Body($$"""{"prompt": "{{Caption}}", "steps": 4, "model": {{JsonSerializer.Serialize(model)}}}"""));
                return (int)response.StatusCode;
            }
            Assert.Equal(200, await Status("tiny"));
            Assert.Equal(400, await Status("escape"));
            Assert.Equal(404, await Status("not-a-model"));
            Assert.Equal(404, await Status("missing"));
            Assert.Equal(400, await Status("../tiny"));
            Assert.Equal(400, await Status(Path.Combine(root, "tiny")));
            Assert.Equal(400, await Status("tiny/../tiny"));
            // Several models: the model is required.
            using var unnamed = await client.PostAsync("/v1/images/generations", ServerTests.Body($$"""{"prompt": "{{Caption}}"}"""));
            Assert.Equal(HttpStatusCode.BadRequest, unnamed.StatusCode);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
            Directory.Delete(outside, recursive: true);
        }
    }

    [Fact]
    public async Task BadOptionsAreRefusedBeforeListening()
    {
        await Assert.ThrowsAsync<InvalidArgumentException>(() => EdgeDiffusionServer.StartAsync(new ServerOptions { Host = "example.com", Port = 0 }));
        await Assert.ThrowsAsync<InvalidArgumentException>(() => EdgeDiffusionServer.StartAsync(new ServerOptions { ModelsRoot = "/nonexistent-root", Port = 0 }));
        await Assert.ThrowsAsync<InvalidArgumentException>(() => EdgeDiffusionServer.StartAsync(new ServerOptions { MaxQueue = -1, Port = 0 }));
    }
}
