using System.Collections.Concurrent;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Pipelines;

/// <summary>Tiny random-weight SD folders from the architecture builders, written once per test run and shared.</summary>
public sealed class TinyModels : IDisposable
{
    private readonly string _root = TestData.NewTempDir("tiny-sd");
    private readonly ConcurrentDictionary<string, Lazy<string>> _folders = new();

    public const ulong Seed = 1234;

    /// <summary>The folder for these export options (same weights for every variant: same seed, same parameter names).</summary>
    public string Folder(TimestepInput timestep = TimestepInput.Int64Batch, int? unetBatch = null, bool int64Ids = false)
    {
        string key = $"{timestep}-{unetBatch?.ToString() ?? "dyn"}-{(int64Ids ? "i64" : "i32")}";
        return _folders.GetOrAdd(key, k => new Lazy<string>(() =>
        {
            string folder = Path.Combine(_root, k);
            StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Tiny, folder, Seed, new FolderWriteOptions
            {
                Export = new ExportOptions { Timestep = timestep, UNetBatch = unetBatch, Int64InputIds = int64Ids },
            });
            return folder;
        })).Value;
    }

    /// <summary>A private copy of the default folder that a test may damage.</summary>
    public string CopyOfDefault()
    {
        string source = Folder();
        string copy = Path.Combine(_root, "copy-" + Guid.NewGuid().ToString("N"));
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(copy, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return copy;
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}

[CollectionDefinition("TinyModels")]
public sealed class TinyModelsCollection : ICollectionFixture<TinyModels>;
