using System.Text.Json;

namespace EdgeDiffusion.Checkpoints;

/// <summary>
/// One name → tensor view over a checkpoint that is a single .safetensors file or several shards listed by a
/// "*.safetensors.index.json" (<c>{"metadata": {...}, "weight_map": {"tensor name": "shard file name"}}</c>, shard names
/// relative to the index's folder). Each shard is opened once, and every name in the weight map must be in its shard.
/// Tensors a shard holds that the weight map does not list are not part of the view.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    private readonly IReadOnlyList<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _fileOf;

    private SafetensorsCheckpoint(string path, IReadOnlyList<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileOf,
        IReadOnlyList<string> names, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _files = files;
        _fileOf = fileOf;
        Names = names;
        Metadata = metadata;
    }

    /// <summary>The .safetensors file or index, as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>The shards (one file for a single-file checkpoint), in the order the index first names them.</summary>
    public IReadOnlyList<SafetensorsFile> Files => _files;

    /// <summary>Tensor names: a single file's in storage order; an index's in weight-map order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>A single file's "__metadata__", or an index's "metadata" (non-string values as their JSON text).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens a .safetensors file, or a *.index.json and every shard it names.</summary>
    public static SafetensorsCheckpoint Open(string pathOrIndex)
    {
        if (!pathOrIndex.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            var file = SafetensorsFile.Open(pathOrIndex);
            var fileOf = file.Names.ToDictionary(n => n, _ => file, StringComparer.Ordinal);
            return new SafetensorsCheckpoint(pathOrIndex, [file], fileOf, file.Names, file.Metadata);
        }
        return OpenIndex(pathOrIndex);
    }

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>The shard holding <paramref name="name"/>.</summary>
    public SafetensorsFile FileOf(string name) =>
        _fileOf.TryGetValue(name, out var file)
            ? file
            : throw new CheckpointFormatException(Path, $"has no tensor named '{name}' ({_fileOf.Count} tensors; see Names)");

    public TensorInfo Get(string name) => FileOf(name).Get(name);

    public void ReadBytes(string name, Span<byte> destination) => FileOf(name).ReadBytes(name, destination);

    public byte[] ReadBytes(string name) => FileOf(name).ReadBytes(name);

    public float[] ReadFloat32(string name) => FileOf(name).ReadFloat32(name);

    public void ReadFloat32(string name, Span<float> destination) => FileOf(name).ReadFloat32(name, destination);

    public long[] ReadInt64(string name) => FileOf(name).ReadInt64(name);

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
    }

    private static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        string text;
        try
        {
            text = File.ReadAllText(indexPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointFormatException(indexPath, $"cannot be read ({e.Message}); check the path", e);
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var shardOf = new List<(string Name, string Shard)>();
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, "is not a JSON object with \"weight_map\"; a sharded checkpoint's index is {\"metadata\": {...}, \"weight_map\": {...}}");
            if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind != JsonValueKind.Null)
            {
                if (meta.ValueKind != JsonValueKind.Object)
                    throw new CheckpointFormatException(indexPath, "\"metadata\" is not a JSON object");
                foreach (var entry in meta.EnumerateObject())
                    metadata[entry.Name] = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : entry.Value.GetRawText();
            }
            if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, "has no \"weight_map\" object of tensor name → shard file name");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(entry.Value.GetString()))
                    throw new CheckpointFormatException(indexPath, $"\"weight_map\" entry for '{entry.Name}' is not a shard file name");
                if (!seen.Add(entry.Name))
                    throw new CheckpointFormatException(indexPath, $"\"weight_map\" lists tensor '{entry.Name}' twice");
                shardOf.Add((entry.Name, entry.Value.GetString()!));
            }
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"is not valid JSON ({e.Message})", e);
        }
        if (shardOf.Count == 0)
            throw new CheckpointFormatException(indexPath, "\"weight_map\" is empty; it should name every tensor's shard");

        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var shards = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var files = new List<SafetensorsFile>();
        try
        {
            var fileOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shard) in shardOf)
            {
                if (!shards.TryGetValue(shard, out var file))
                {
                    string shardPath = ShardPath(indexPath, folder, shard);
                    if (!File.Exists(shardPath))
                        throw new CheckpointFormatException(indexPath, $"names shard '{shard}' for tensor '{name}', but {shardPath} does not exist; download every shard beside the index");
                    file = SafetensorsFile.Open(shardPath);
                    shards.Add(shard, file);
                    files.Add(file);
                }
                if (!file.Contains(name))
                    throw new CheckpointFormatException(indexPath, $"maps tensor '{name}' to shard '{shard}', which does not hold it; the index and shards are from different checkpoints");
                fileOf.Add(name, file);
            }
            return new SafetensorsCheckpoint(indexPath, files, fileOf, shardOf.Select(e => e.Name).ToArray(), metadata);
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
    }

    /// <summary>A shard's path: a plain file name (or relative path) inside the index's folder, never outside it.</summary>
    private static string ShardPath(string indexPath, string folder, string shard)
    {
        string full = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, shard));
        string root = folder.EndsWith(System.IO.Path.DirectorySeparatorChar) ? folder : folder + System.IO.Path.DirectorySeparatorChar;
        if (System.IO.Path.IsPathRooted(shard) || !full.StartsWith(root, StringComparison.Ordinal))
            throw new CheckpointFormatException(indexPath, $"names shard '{shard}', which is outside the index's folder; shards must lie beside the index");
        return full;
    }
}
