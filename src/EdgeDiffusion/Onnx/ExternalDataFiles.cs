using System.Globalization;
using EdgeDiffusion.Onnx.Protobuf;
using Microsoft.Win32.SafeHandles;

namespace EdgeDiffusion.Onnx;

/// <summary>Where one tensor's bytes live in an external data file.</summary>
public readonly record struct ExternalDataLocation(string Location, string FullPath, long Offset, long Length);

/// <summary>
/// Reads tensor bytes that live in external data files next to a model. Files are opened once, on demand, and read
/// with positional reads, so loading a model never pulls its weights into memory: only the tensor asked for is read.
/// </summary>
public sealed class ExternalDataFiles : IDisposable
{
    private readonly Dictionary<string, SafeFileHandle> _handles = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public ExternalDataFiles(string baseDirectory, string modelFile)
    {
        BaseDirectory = baseDirectory;
        ModelFile = modelFile;
    }

    /// <summary>The folder that external locations are relative to (the model's folder).</summary>
    public string BaseDirectory { get; }

    /// <summary>The model file, named in error messages.</summary>
    public string ModelFile { get; }

    public static bool IsExternal(TensorProto tensor) =>
        tensor.HasDataLocation && tensor.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Parses and checks a tensor's external_data entries: a safe relative path to an existing file, and a range inside it.</summary>
    public ExternalDataLocation Resolve(TensorProto tensor)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (var entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offset = ParseNonNegative(tensor, "offset", entry.Value); break;
                case "length": length = ParseNonNegative(tensor, "length", entry.Value); break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw Problem(ModelFile, tensor, "is marked external but has no 'location' entry; re-export the model");
        if (Path.IsPathRooted(location) || location.Split('/', '\\').Any(part => part == ".."))
            throw Problem(ModelFile, tensor, $"external location '{location}' leaves the model's folder; only relative paths inside it are allowed");

        string fullPath = Path.GetFullPath(Path.Combine(BaseDirectory, location));
        long fileLength = OpenHandleLength(fullPath, tensor, location);
        if (offset > fileLength)
            throw Problem(fullPath, tensor, $"offset {offset} is past the end of the file ({fileLength} bytes); the data file is truncated or belongs to another model");
        if (length < 0) length = fileLength - offset;
        if (length > fileLength - offset)
            throw Problem(fullPath, tensor, $"offset {offset} + length {length} is past the end of the file ({fileLength} bytes); the data file is truncated or belongs to another model");
        return new ExternalDataLocation(location, fullPath, offset, length);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes starting <paramref name="start"/> bytes into the tensor's range.</summary>
    public void Read(ExternalDataLocation where, long start, Span<byte> destination)
    {
        SafeFileHandle handle;
        lock (_gate) handle = _handles[where.FullPath];
        long position = where.Offset + start;
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(handle, destination, position);
            if (n <= 0)
                throw new OnnxFormatException(where.FullPath, $"ended early at byte {position}; the data file is truncated");
            destination = destination[n..];
            position += n;
        }
    }

    private long OpenHandleLength(string fullPath, TensorProto tensor, string location)
    {
        lock (_gate)
        {
            if (!_handles.TryGetValue(fullPath, out var handle))
            {
                if (Directory.Exists(fullPath))
                    throw Problem(ModelFile, tensor, $"external data '{location}' is a folder, not a file");
                if (!File.Exists(fullPath))
                    throw Problem(ModelFile, tensor, $"external data file '{location}' is missing; copy it next to the model (expected at {fullPath})");
                try
                {
                    handle = File.OpenHandle(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw Problem(ModelFile, tensor, $"external data file '{location}' cannot be opened: {e.Message}");
                }
                _handles[fullPath] = handle;
            }
            return RandomAccess.GetLength(handle);
        }
    }

    private long ParseNonNegative(TensorProto tensor, string key, string value)
    {
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long parsed))
            throw Problem(ModelFile, tensor, $"external '{key}' is '{value}', not a non-negative integer; the model file is corrupt");
        return parsed;
    }

    internal static OnnxFormatException Problem(string file, TensorProto tensor, string what) =>
        new(file, $"tensor '{tensor.Name}' {what}");

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var handle in _handles.Values) handle.Dispose();
            _handles.Clear();
        }
    }
}
