using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using EdgeDiffusion.Serving;

namespace EdgeDiffusion.Bench;

/// <summary>
/// A bounded load test of the local server (issue 18): an in-process server on a free loopback port, a warm-up, then
/// <c>requests</c> POST /v1/images/generations from <c>clients</c> concurrent clients (each sending its next request when
/// the previous one is answered), after <c>warmup</c> requests sent the same way. Reports status counts (429s are expected only when clients exceed 1 + max-queue),
/// p50/p99/max latency, throughput, and this process's RSS after warm-up and at the end (server and clients share it).
/// </summary>
public static class ServerLoadBenchmark
{
    public static int Run(string? model, int requests, int clients, int steps, int maxQueue, int warmup)
    {
        var options = new ServerOptions { Model = model, Port = 0, MaxQueue = maxQueue };
        using var server = new Holder(EdgeDiffusionServer.StartAsync(options).GetAwaiter().GetResult());
        using var http = new HttpClient { BaseAddress = server.Server.Address, Timeout = TimeSpan.FromMinutes(5) };
        string body = $$"""{"prompt": "a red circle on a blue background", "steps": {{steps}}, "size": "64x64"}""";
        async Task<(HttpStatusCode, double)> One()
        {
            var sw = Stopwatch.StartNew();
            using var response = await http.PostAsync("/v1/images/generations", new StringContent(body, Encoding.UTF8, "application/json"));
            await response.Content.ReadAsByteArrayAsync();
            return (response.StatusCode, sw.Elapsed.TotalMilliseconds);
        }

        // Warm up as the load runs (the same number of concurrent clients), so connections, buffers and pool threads exist.
        int warm = 0;
        Task.WaitAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () => { while (Interlocked.Increment(ref warm) <= warmup) await One(); })).ToArray());
        GC.Collect();
        long rssStart = ProcessMemory.CurrentRssBytes();
        Console.WriteLine($"server {server.Server.Address} model {string.Join(",", server.Server.Models)}; {warmup} warm-up requests from {clients} clients; RSS after warm-up {rssStart / 1048576.0:F1} MiB");

        var results = new System.Collections.Concurrent.ConcurrentBag<(HttpStatusCode Status, double Ms)>();
        int next = 0, done = 0;
        var trajectory = new System.Collections.Concurrent.ConcurrentQueue<(int, long)>();
        var total = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) <= requests)
            {
                results.Add(await One());
                if (Interlocked.Increment(ref done) % 50 == 0) trajectory.Enqueue((done, ProcessMemory.CurrentRssBytes()));
            }
        })).ToArray();
        Task.WaitAll(workers);
        double seconds = total.Elapsed.TotalSeconds;
        GC.Collect();
        long rssEnd = ProcessMemory.CurrentRssBytes();

        var ok = results.Where(r => r.Status == HttpStatusCode.OK).Select(r => r.Ms).Order().ToArray();
        double P(double q) => ok.Length == 0 ? double.NaN : ok[Math.Min(ok.Length - 1, (int)Math.Ceiling(q * ok.Length) - 1)];
        var byStatus = results.GroupBy(r => (int)r.Status).OrderBy(g => g.Key).Select(g => $"{g.Key}: {g.Count()}");
        double drift = 100.0 * (rssEnd - rssStart) / rssStart;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{requests} requests, {clients} clients, {steps} steps, max-queue {maxQueue}: {string.Join(", ", byStatus)}; {seconds:F1} s, {requests / seconds:F2} req/s"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"latency (200s): p50 {P(0.50):F0} ms, p99 {P(0.99):F0} ms, max {ok.LastOrDefault():F0} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RSS: {rssStart / 1048576.0:F1} MiB after warm-up, {rssEnd / 1048576.0:F1} MiB at the end ({drift:+0.0;-0.0} %); server: completed {server.Server.Statistics.Completed}, rejected {server.Server.Statistics.Rejected}, failed {server.Server.Statistics.Failed}"));
        Console.WriteLine("RSS every 50 requests: " + string.Join(", ", trajectory.OrderBy(t => t.Item1).Select(t => $"{t.Item1}: {t.Item2 / 1048576.0:F1}")) + " MiB");
        bool unexpected = results.Any(r => r.Status != HttpStatusCode.OK && (r.Status != HttpStatusCode.TooManyRequests || clients <= 1 + maxQueue));
        return unexpected || Math.Abs(drift) > 5 ? 1 : 0;
    }

    private sealed class Holder(EdgeDiffusionServer server) : IDisposable
    {
        public EdgeDiffusionServer Server { get; } = server;
        public void Dispose() => Server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
