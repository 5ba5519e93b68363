using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeDiffusion.Onnx;
using Microsoft.Win32.SafeHandles;

namespace EdgeDiffusion.Checkpoints;

/// <summary>
/// One .safetensors file (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// naming each tensor's dtype, shape and byte range (relative to the byte after the header, plus an optional
/// "__metadata__" object of strings), then the raw little-endian tensor bytes.
/// <see cref="Open"/> reads and checks only the header; tensors are read on demand, one at a time, with positional
/// reads, so opening a multi-GB file costs a few KB of memory. Every problem with the file is a
/// <see cref="CheckpointFormatException"/> naming it.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";
    private const int ChunkBytes = 1 << 20;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, TensorInfo> _tensors;
    private readonly long _dataStart;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, Dictionary<string, TensorInfo> tensors,
        IReadOnlyList<string> names, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        _tensors = tensors;
        Names = names;
        Metadata = metadata;
    }

    /// <summary>The file, as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>Tensor names in storage order (by where their bytes begin).</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The header's "__metadata__" (empty when it has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Where the tensor bytes begin in the file: 8 + the header length.</summary>
    public long DataStart => _dataStart;

    /// <summary>Opens <paramref name="path"/> and checks its header; the tensors are read when asked for.</summary>
    public static SafetensorsFile Open(string path)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointFormatException(path, $"cannot be opened ({e.Message}); check the path", e);
        }

        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            var (dataStart, tensors, names, metadata) = ReadHeader(path, handle, fileLength);
            return new SafetensorsFile(path, handle, dataStart, tensors, names, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public bool TryGet(string name, out TensorInfo info) => _tensors.TryGetValue(name, out info!);

    /// <summary>The header's entry for <paramref name="name"/>.</summary>
    public TensorInfo Get(string name) =>
        _tensors.TryGetValue(name, out var info)
            ? info
            : throw new CheckpointFormatException(Path, $"has no tensor named '{name}' ({_tensors.Count} tensors; see Names)");

    /// <summary>The tensor's raw bytes (little-endian, row-major) into <paramref name="destination"/>, which must be exactly its size.</summary>
    public void ReadBytes(string name, Span<byte> destination)
    {
        var info = Get(name);
        if (destination.Length != info.ByteLength)
            throw new ArgumentException($"tensor '{name}' has {info.ByteLength} bytes; the destination has {destination.Length}", nameof(destination));
        ReadAt(info, 0, destination);
    }

    /// <summary>The tensor's raw bytes in a new array.</summary>
    public byte[] ReadBytes(string name)
    {
        var info = Get(name);
        var bytes = new byte[checked((int)info.ByteLength)];
        ReadAt(info, 0, bytes);
        return bytes;
    }

    /// <summary>An F32, F16 or BF16 tensor as float32 values (F16 and BF16 widened exactly).</summary>
    public float[] ReadFloat32(string name)
    {
        var info = Get(name);
        var values = new float[checked((int)info.ElementCount)];
        ReadFloat32(info, values);
        return values;
    }

    /// <summary>An F32, F16 or BF16 tensor as float32 values into <paramref name="destination"/>, which must hold exactly its elements.</summary>
    public void ReadFloat32(string name, Span<float> destination) => ReadFloat32(Get(name), destination);

    /// <summary>An I64 tensor (token ids, positions) as longs.</summary>
    public long[] ReadInt64(string name)
    {
        var info = Get(name);
        if (info.DType != SafetensorsDType.I64)
            throw new CheckpointFormatException(Path, $"tensor '{name}' is {info.DType.Name()}, not I64; read it with ReadBytes");
        var values = new long[checked((int)info.ElementCount)];
        ReadAt(info, 0, MemoryMarshal.AsBytes(values.AsSpan()));
        if (!BitConverter.IsLittleEndian)
            for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReverseEndianness(values[i]);
        return values;
    }

    public void Dispose() => _handle.Dispose();

    private void ReadFloat32(TensorInfo info, Span<float> destination)
    {
        if (destination.Length != info.ElementCount)
            throw new ArgumentException($"tensor '{info.Name}' has {info.ElementCount} elements; the destination has {destination.Length}", nameof(destination));
        switch (info.DType)
        {
            case SafetensorsDType.F32:
                ReadAt(info, 0, MemoryMarshal.AsBytes(destination));
                if (!BitConverter.IsLittleEndian)
                {
                    var bits = MemoryMarshal.Cast<float, uint>(destination);
                    for (int i = 0; i < bits.Length; i++) bits[i] = BinaryPrimitives.ReverseEndianness(bits[i]);
                }
                return;
            case SafetensorsDType.F16:
            case SafetensorsDType.BF16:
                bool half = info.DType == SafetensorsDType.F16;
                byte[] chunk = ArrayPool<byte>.Shared.Rent((int)Math.Min(ChunkBytes, Math.Max(info.ByteLength, 2)));
                try
                {
                    int perChunk = chunk.Length / 2;
                    for (int done = 0; done < destination.Length; done += perChunk)
                    {
                        int n = Math.Min(perChunk, destination.Length - done);
                        var raw = chunk.AsSpan(0, n * 2);
                        ReadAt(info, (long)done * 2, raw);
                        var output = destination.Slice(done, n);
                        for (int i = 0; i < n; i++)
                        {
                            ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(raw.Slice(i * 2, 2));
                            output[i] = half ? (float)BitConverter.UInt16BitsToHalf(bits) : new BFloat16(bits).ToFloat();
                        }
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(chunk);
                }
                return;
            default:
                throw new CheckpointFormatException(Path,
                    $"tensor '{info.Name}' is {info.DType.Name()}, not F32, F16 or BF16; read it with ReadBytes (or ReadInt64 for I64)");
        }
    }

    /// <summary>Bytes of <paramref name="info"/> from <paramref name="offset"/> within it, filling <paramref name="destination"/>.</summary>
    private void ReadAt(TensorInfo info, long offset, Span<byte> destination)
    {
        long position = _dataStart + info.Begin + offset;
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(_handle, destination, position);
            if (read <= 0)
                throw new CheckpointFormatException(Path, $"ended while reading tensor '{info.Name}' (the file was truncated after it was opened)");
            destination = destination[read..];
            position += read;
        }
    }

    private static (long DataStart, Dictionary<string, TensorInfo> Tensors, IReadOnlyList<string> Names, IReadOnlyDictionary<string, string> Metadata)
        ReadHeader(string path, SafeFileHandle handle, long fileLength)
    {
        if (fileLength < 8)
            throw new CheckpointFormatException(path, $"is {fileLength} bytes, shorter than the 8-byte header length of a .safetensors file; the file is truncated or not safetensors");

        Span<byte> lengthBytes = stackalloc byte[8];
        ReadExactly(path, handle, lengthBytes, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength == 0)
            throw new CheckpointFormatException(path, "has a header length of 0; a .safetensors file starts with the length of a non-empty JSON header");
        if (headerLength > MaxHeaderBytes)
            throw new CheckpointFormatException(path, $"has a header length of {headerLength} bytes, over the {MaxHeaderBytes}-byte limit; the file is not safetensors or is corrupt");
        if ((long)headerLength > fileLength - 8)
            throw new CheckpointFormatException(path, $"has a header length of {headerLength} bytes but only {fileLength - 8} bytes follow it; the file is truncated");

        var header = new byte[(int)headerLength];
        ReadExactly(path, handle, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new CheckpointFormatException(path, "header is not valid UTF-8 JSON (invalid UTF-8 bytes); the file is corrupt or not safetensors");

        JsonDocument document;
        try
        {
            // The format allows trailing spaces after the JSON, which the parser skips.
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"header is not valid UTF-8 JSON ({FirstLine(e.Message)}); the file is corrupt or not safetensors", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(path, $"header is a JSON {Kind(root)}, not an object of tensor entries");

            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (sawMetadata)
                        throw new CheckpointFormatException(path, $"header has \"{MetadataKey}\" twice");
                    sawMetadata = true;
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(property.Name))
                    throw new CheckpointFormatException(path, $"header names tensor '{property.Name}' twice");
                tensors.Add(property.Name, ReadEntry(path, property.Name, property.Value, dataLength));
            }

            var ordered = tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End).ToArray();
            for (int i = 1; i < ordered.Length; i++)
                if (ordered[i].Begin < ordered[i - 1].End)
                    throw new CheckpointFormatException(path,
                        $"tensors '{ordered[i - 1].Name}' (bytes {ordered[i - 1].Begin}..{ordered[i - 1].End}) and '{ordered[i].Name}' (bytes {ordered[i].Begin}..{ordered[i].End}) overlap; the header is corrupt");

            return (dataStart, tensors, ordered.Select(t => t.Name).ToArray(), metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, $"header's \"{MetadataKey}\" is a JSON {Kind(value)}, not an object of strings");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new CheckpointFormatException(path, $"header's \"{MetadataKey}\" value for '{entry.Name}' is a JSON {Kind(entry.Value)}; the format allows only strings");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw new CheckpointFormatException(path, $"header's \"{MetadataKey}\" has key '{entry.Name}' twice");
        }
    }

    private static TensorInfo ReadEntry(string path, string name, JsonElement entry, long dataLength)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(path, $"tensor '{name}': entry is a JSON {Kind(entry)}, not an object with dtype, shape and data_offsets");

        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new CheckpointFormatException(path, $"tensor '{name}': \"dtype\" is missing or not a string");
        string dtypeName = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
            throw new CheckpointFormatException(path, $"tensor '{name}': unknown dtype '{dtypeName}' (known: {SafetensorsDTypes.KnownNames})");

        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new CheckpointFormatException(path, $"tensor '{name}': \"shape\" is missing or not a list of non-negative integers");
        var shape = new long[shapeElement.GetArrayLength()];
        int axis = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw new CheckpointFormatException(path, $"tensor '{name}': \"shape\" is not a list of non-negative integers (axis {axis} is {dim.GetRawText()})");
            shape[axis++] = d;
        }

        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !TryNonNegative(offsets[0], out long begin) || !TryNonNegative(offsets[1], out long end))
            throw new CheckpointFormatException(path, $"tensor '{name}': \"data_offsets\" is not two non-negative integers [begin, end]");
        if (begin > end)
            throw new CheckpointFormatException(path, $"tensor '{name}': data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw new CheckpointFormatException(path, $"tensor '{name}': data_offsets end at byte {end} but the data after the header is {dataLength} bytes; the file is truncated");

        long expected;
        try
        {
            expected = dtype.Size();
            foreach (long d in shape) expected = checked(expected * d);
        }
        catch (OverflowException)
        {
            throw new CheckpointFormatException(path, $"tensor '{name}': shape [{string.Join(", ", shape)}] is too large to address");
        }
        if (expected != end - begin)
            throw new CheckpointFormatException(path,
                $"tensor '{name}': shape [{string.Join(", ", shape)}] of {dtypeName} is {expected} bytes but data_offsets [{begin}, {end}] hold {end - begin}; the header is corrupt");

        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static bool TryNonNegative(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value) && value >= 0;
    }

    private static void ReadExactly(string path, SafeFileHandle handle, Span<byte> destination, long position)
    {
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(handle, destination, position);
            if (read <= 0) throw new CheckpointFormatException(path, "ended while its header was being read; the file is truncated");
            destination = destination[read..];
            position += read;
        }
    }

    private static string Kind(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "list",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        _ => "null",
    };

    private static string FirstLine(string message)
    {
        int newline = message.IndexOfAny(['\r', '\n']);
        return newline < 0 ? message : message[..newline];
    }
}
