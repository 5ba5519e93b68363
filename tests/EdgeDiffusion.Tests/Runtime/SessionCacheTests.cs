using EdgeDiffusion.Runtime;
using EdgeDiffusion.Tests.Pipelines;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Tests.Runtime;

[Collection("TinyModels")]
public sealed class SessionCacheTests(TinyModels models) : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("cache");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string UNet => Path.Combine(models.Folder(), "unet", "model.onnx");

    /// <summary>The tiny UNet's output for fixed inputs: a cached session must compute the same numbers.</summary>
    private static float[] Run(InferenceSession session)
    {
        var sample = Enumerable.Range(0, 2 * 4 * 8 * 8).Select(i => MathF.Sin(i)).ToArray();
        var hidden = Enumerable.Range(0, 2 * 77 * 32).Select(i => MathF.Cos(i * 0.1f)).ToArray();
        using var s = OrtValue.CreateTensorValueFromMemory(sample, [2, 4, 8, 8]);
        using var t = OrtValue.CreateTensorValueFromMemory(new long[] { 500, 500 }, [2]);
        using var h = OrtValue.CreateTensorValueFromMemory(hidden, [2, 77, 32]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, ["sample", "timestep", "encoder_hidden_states"], [s, t, h], ["out_sample"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Fact]
    public void MissThenHitWithTheSameOutputs()
    {
        var warnings = new List<string>();
        var cache = new SessionCache(_dir, warnings.Add);
        var settings = SessionSettings.Default with { Cache = cache };
        float[] reference;
        using (var plain = SessionFactory.Create(UNet)) reference = Run(plain);
        using (var first = cache.Create(UNet, settings, out var outcome))
        {
            Assert.Equal(CacheOutcome.Miss, outcome);
            Assert.Equal(reference, Run(first));
        }
        string entry = cache.EntryFor(UNet, settings);
        Assert.True(File.Exists(Path.Combine(entry, "model.onnx")));
        Assert.True(File.Exists(Path.Combine(entry, "manifest.json")));
        using (var second = cache.Create(UNet, settings, out var outcome))
        {
            Assert.Equal(CacheOutcome.Hit, outcome);
            Assert.Equal(reference, Run(second));
        }
        Assert.Empty(warnings);
        Assert.Empty(Directory.GetDirectories(_dir, "*.tmp-*"));
    }

    [Fact]
    public void TruncatedEntryIsRebuiltWithAWarning()
    {
        var warnings = new List<string>();
        var cache = new SessionCache(_dir, warnings.Add);
        var settings = SessionSettings.Default with { Cache = cache };
        cache.Create(UNet, settings, out _).Dispose();
        string entry = cache.EntryFor(UNet, settings);
        string victim = Directory.GetFiles(entry).Where(f => !f.EndsWith("manifest.json")).MaxBy(f => new FileInfo(f).Length)!;
        using (var stream = new FileStream(victim, FileMode.Open)) stream.SetLength(stream.Length / 2);

        using var session = cache.Create(UNet, settings, out var outcome);
        Assert.Equal(CacheOutcome.Rebuilt, outcome);
        Assert.Contains(warnings, w => w.Contains("unusable") && w.Contains(Path.GetFileName(victim)));
        using (var plain = SessionFactory.Create(UNet)) Assert.Equal(Run(plain), Run(session));
        cache.Create(UNet, settings, out var after).Dispose();
        Assert.Equal(CacheOutcome.Hit, after);
    }

    [Fact]
    public void DifferentOptionsOrModelsGetDifferentEntries()
    {
        var cache = new SessionCache(_dir);
        var a = SessionSettings.Default with { Cache = cache };
        var b = a with { OptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC };
        var c = a with { ConfigEntries = new Dictionary<string, string> { ["session.disable_prepacking"] = "1" } };
        var entries = new[] { cache.EntryFor(UNet, a), cache.EntryFor(UNet, b), cache.EntryFor(UNet, c),
            cache.EntryFor(Path.Combine(models.Folder(), "text_encoder", "model.onnx"), a) };
        Assert.Equal(entries.Length, entries.Distinct().Count());
        Assert.Equal(entries[0], cache.EntryFor(UNet, a with { IntraOpThreads = 1 })); // threads do not change the optimized graph
    }

    [Fact]
    public void UnwritableCacheFolderRunsWithoutCachingAndSaysSo()
    {
        string blocker = Path.Combine(_dir, "not-a-folder");
        File.WriteAllText(blocker, "a file where the cache folder should be");
        var warnings = new List<string>();
        var cache = new SessionCache(Path.Combine(blocker, "cache"), warnings.Add);
        using var session = cache.Create(UNet, SessionSettings.Default with { Cache = cache }, out var outcome);
        Assert.Equal(CacheOutcome.Unwritable, outcome);
        Assert.Contains(warnings, w => w.Contains("cannot be written") && w.Contains("without the cache"));
        using var plain = SessionFactory.Create(UNet);
        Assert.Equal(Run(plain), Run(session));
    }
}
