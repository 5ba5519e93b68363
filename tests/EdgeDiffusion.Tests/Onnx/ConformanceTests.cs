using System.Collections.Concurrent;
using EdgeDiffusion.Onnx;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Onnx;

public sealed class ConformanceTests(ITestOutputHelper output)
{
    [OnnxBackendDataFact]
    public void EveryBackendTestModelRoundTripsBitExactly()
    {
        Assert.True(Directory.Exists(TestData.OnnxBackendTestData), $"{TestData.OnnxBackendTestData} is missing: apt-get install -y libonnx-testdata");
        var models = Directory.GetFiles(TestData.OnnxBackendTestData, "model.onnx", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray();
        Assert.NotEmpty(models);
        string root = TestData.NewTempDir("conformance");
        var results = new ConcurrentBag<ConformanceResult>();
        try
        {
            Parallel.For(0, models.Length, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
                results.Add(BackendConformance.Check(models[i], Path.Combine(root, i.ToString()))));
        }
        finally { Directory.Delete(root, recursive: true); }

        int passed = results.Count(r => r.Outcome == ConformanceOutcome.Passed);
        int unsupported = results.Count(r => r.Outcome == ConformanceOutcome.UnsupportedByOrt);
        var failed = results.Where(r => r.Outcome == ConformanceOutcome.Failed).OrderBy(r => r.Model, StringComparer.Ordinal).ToList();
        string line = $"conformance: {passed} passed, {unsupported} unsupported-by-ort, {failed.Count} failed";
        output.WriteLine(line);
        output.WriteLine($"({models.Length} models; {results.Count(r => r.Nondeterministic)} with random outputs compared by type and shape)");
        foreach (var r in results.Where(r => r.Outcome == ConformanceOutcome.UnsupportedByOrt).OrderBy(r => r.Model, StringComparer.Ordinal))
            output.WriteLine($"  unsupported-by-ort {r.Model}: {r.Detail}");
        foreach (var r in failed) output.WriteLine($"  FAILED {r.Model}: {r.Detail}");
        ConformanceReport.Write(line, results);
        Assert.True(failed.Count == 0, line + "\n" + string.Join("\n", failed.Take(30).Select(r => $"{r.Model}: {r.Detail}")));
    }
}

/// <summary>Writes the summary where `dotnet test` shows it (stdout of the test host is not shown) and to a file for CI.</summary>
internal static class ConformanceReport
{
    public static void Write(string line, IEnumerable<ConformanceResult> results)
    {
        string dir = Path.Combine(TestData.RepoRoot, "artifacts");
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "conformance.txt"),
            new[] { line }.Concat(results.OrderBy(r => r.Model, StringComparer.Ordinal).Select(r => $"{r.Outcome}\t{r.Model}\t{r.Detail}")));
    }
}
