using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>What <see cref="SessionCache.Create"/> did.</summary>
public enum CacheOutcome
{
    /// <summary>Loaded from a valid cache entry.</summary>
    Hit,

    /// <summary>No entry: built the session and saved an entry.</summary>
    Miss,

    /// <summary>The entry was corrupt or stale: removed, rebuilt and saved again.</summary>
    Rebuilt,

    /// <summary>The cache folder cannot be written: built the session without caching.</summary>
    Unwritable,
}


/// <summary>
/// Keeps what ONNX Runtime lets a later session reuse: the optimized graph (<c>SessionOptions.OptimizedModelFilePath</c>)
/// with its weights, and the prepacked weights, in one external data file that the next session memory-maps instead of
/// optimizing and prepacking again. Entries are keyed by the model's fingerprint, ONNX Runtime's version, the execution
/// provider and every option that changes the optimized graph. An entry is written to a temporary folder and renamed
/// into place; on use, its manifest is checked (file sizes and the graph file's SHA-256) and a bad entry is rebuilt.
/// </summary>
public sealed class SessionCache
{
    private const string ModelFile = "model.onnx";
    private const string DataFile = "model.onnx.data";
    private const string ManifestFile = "manifest.json";

    public SessionCache(string directory, Action<string>? warn = null)
    {
        Directory = Path.GetFullPath(directory);
        _warn = warn ?? (_ => { });
    }

    private readonly Action<string> _warn;

    public string Directory { get; }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, CacheOutcome> _outcomes = new();

    /// <summary>What happened for each model file this cache made a session for (the last time).</summary>
    public IReadOnlyDictionary<string, CacheOutcome> Outcomes => _outcomes;

    /// <summary>$EDGEDIFF_CACHE_DIR, else $XDG_CACHE_HOME/edgediffusion, else the user's local application data (~/.cache on Linux).</summary>
    public static string DefaultDirectory
    {
        get
        {
            if (Environment.GetEnvironmentVariable("EDGEDIFF_CACHE_DIR") is { Length: > 0 } explicitDir) return explicitDir;
            if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "edgediffusion");
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return OperatingSystem.IsLinux() && home.Length > 0
                ? Path.Combine(home, ".cache", "edgediffusion")
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "EdgeDiffusion", "cache");
        }
    }

    /// <summary>The entry folder for a model and settings (whether or not it exists).</summary>
    public string EntryFor(string modelPath, SessionSettings settings) => Path.Combine(Directory, Key(modelPath, SessionFactory.Resolve(modelPath, settings)));

    /// <summary>A session for <paramref name="modelPath"/>: from the cache when a valid entry exists, else built (and cached when possible).</summary>
    public InferenceSession Create(string modelPath, SessionSettings settings, out CacheOutcome outcome) =>
        CreateResolved(modelPath, SessionFactory.Resolve(modelPath, settings), out outcome);

    /// <summary>As <see cref="Create"/> for settings already through <see cref="SessionFactory.Resolve"/> (which reads the model's outline: done once).</summary>
    internal InferenceSession CreateResolved(string modelPath, SessionSettings resolved, out CacheOutcome outcome)
    {
        var session = CreateCore(modelPath, resolved, out outcome);
        _outcomes[Path.GetFullPath(modelPath)] = outcome;
        return session;
    }

    private InferenceSession CreateCore(string modelPath, SessionSettings settings, out CacheOutcome outcome)
    {
        string entry = Path.Combine(Directory, Key(modelPath, settings));
        bool rebuilt = false;
        if (System.IO.Directory.Exists(entry))
        {
            string? problem = Check(entry);
            if (problem is null)
            {
                try
                {
                    var session = SessionFactory.Create(Path.Combine(entry, ModelFile), settings with { OptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, Cache = null }, null);
                    outcome = CacheOutcome.Hit;
                    return session;
                }
                catch (Onnx.OnnxFormatException e)
                {
                    problem = e.Problem;
                }
            }
            _warn($"cache entry {entry} is unusable ({problem}); rebuilding it");
            TryDelete(entry);
            rebuilt = true;
        }

        string temporary = entry + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            System.IO.Directory.CreateDirectory(temporary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _warn($"cache folder {Directory} cannot be written ({e.Message}); running without the cache");
            outcome = CacheOutcome.Unwritable;
            return SessionFactory.Create(modelPath, settings with { Cache = null }, null);
        }
        try
        {
            var entries = new Dictionary<string, string>(settings.ConfigEntries)
            {
                ["session.optimized_model_external_initializers_file_name"] = DataFile,
                ["session.optimized_model_external_initializers_min_size_in_bytes"] = "1024",
                ["session.save_external_prepacked_constant_initializers"] = "1",
            };
            var session = SessionFactory.Create(modelPath, settings with { Cache = null, ConfigEntries = entries }, Path.Combine(temporary, ModelFile));
            try
            {
                WriteManifest(temporary, modelPath);
                System.IO.Directory.Move(temporary, entry);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _warn($"cache entry {entry} could not be saved ({e.Message}); running without it");
                TryDelete(temporary);
            }
            outcome = rebuilt ? CacheOutcome.Rebuilt : CacheOutcome.Miss;
            return session;
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Null when the entry is complete and unchanged, else what is wrong with it.</summary>
    private static string? Check(string entry)
    {
        string manifestPath = Path.Combine(entry, ManifestFile);
        if (!File.Exists(manifestPath)) return "no manifest";
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(manifestPath));
            foreach (var file in doc.RootElement.GetProperty("files").EnumerateArray())
            {
                string name = file.GetProperty("name").GetString()!;
                string path = Path.Combine(entry, name);
                if (!File.Exists(path)) return $"{name} is missing";
                if (new FileInfo(path).Length != file.GetProperty("bytes").GetInt64()) return $"{name} has the wrong size";
                if (file.TryGetProperty("sha256", out var sha) && Sha256(path) != sha.GetString()) return $"{name} does not match its checksum";
            }
            return null;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IOException)
        {
            return $"manifest unreadable: {e.Message}";
        }
    }

    private static void WriteManifest(string entry, string source)
    {
        var files = System.IO.Directory.EnumerateFiles(entry).Select(path => new Dictionary<string, object>
        {
            ["name"] = Path.GetFileName(path),
            ["bytes"] = new FileInfo(path).Length,
            // The graph file is small (weights are in the data file): checksum it; the data file is checked by size.
            ["sha256"] = Path.GetFileName(path) == ModelFile ? Sha256(path) : null!,
        }.Where(p => p.Value is not null).ToDictionary()).ToList();
        var manifest = new Dictionary<string, object>
        {
            ["source"] = Path.GetFullPath(source),
            ["onnxruntime"] = OrtEnv.Instance().GetVersionString(),
            ["created_utc"] = DateTime.UtcNow.ToString("O"),
            ["files"] = files,
        };
        File.WriteAllText(Path.Combine(entry, ManifestFile), JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// The entry key: SHA-256 over ONNX Runtime's version, the provider, the options that shape the optimized graph and
    /// the model's fingerprint (the graph file's bytes, hashed in full up to 64 MiB, else its size, time and first and last
    /// MiB; every external data file's size and time). A changed model or option gives a new key, never a stale entry.
    /// </summary>
    public static string Key(string modelPath, SessionSettings settings)
    {
        var sb = new StringBuilder();
        sb.Append("ort=").Append(OrtEnv.Instance().GetVersionString()).Append(";ep=").Append(settings.Execution.Signature);
        sb.Append(";opt=").Append(settings.OptimizationLevel);
        foreach (var (k, v) in settings.ConfigEntries.OrderBy(p => p.Key, StringComparer.Ordinal)) sb.Append(';').Append(k).Append('=').Append(v);
        foreach (var (name, value) in settings.FreeDimensions.OrderBy(p => p.Key, StringComparer.Ordinal)) sb.Append(";dim:").Append(name).Append('=').Append(value);
        string full = Path.GetFullPath(modelPath);
        var info = new FileInfo(full);
        sb.Append(";model=").Append(info.Length);
        if (info.Length <= 64L << 20) sb.Append(':').Append(Sha256(full));
        else sb.Append(':').Append(info.LastWriteTimeUtc.Ticks).Append(':').Append(SampledSha256(full));
        foreach (var data in System.IO.Directory.EnumerateFiles(Path.GetDirectoryName(full)!).Where(f => f != full && !f.EndsWith(".json", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            var d = new FileInfo(data);
            sb.Append(";data:").Append(d.Name).Append('=').Append(d.Length).Append(':').Append(d.LastWriteTimeUtc.Ticks);
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..32].ToLowerInvariant();
    }

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    private static string SampledSha256(string path)
    {
        using var stream = File.OpenRead(path);
        var buffer = new byte[1 << 20];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(buffer, 0, stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false));
        stream.Seek(-Math.Min(stream.Length, buffer.Length), SeekOrigin.End);
        hash.AppendData(buffer, 0, stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false));
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    private static void TryDelete(string folder)
    {
        try { if (System.IO.Directory.Exists(folder)) System.IO.Directory.Delete(folder, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
