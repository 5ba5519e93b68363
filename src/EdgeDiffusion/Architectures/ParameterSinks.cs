using System.Globalization;
using System.Runtime.InteropServices;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Architectures;

/// <summary>How a parameter's initial values are made.</summary>
public enum ParameterInit
{
    /// <summary>Seeded uniform values in [-scale, scale).</summary>
    Random,

    /// <summary>All 1 (normalisation scales).</summary>
    Ones,

    /// <summary>All 0 (normalisation shifts).</summary>
    Zeros,
}

/// <summary>One float32 parameter of an architecture: its diffusers/transformers name, PyTorch-layout shape and initial values.</summary>
public sealed record ParameterInfo(string Name, long[] Shape, ParameterInit Init, float Scale = 0f)
{
    /// <summary>Number of elements.</summary>
    public long Count => Shape.Aggregate(1L, (n, d) => checked(n * d));

    public long Bytes => Count * sizeof(float);
}

/// <summary>
/// Where an architecture's parameters go while its graph is built. The architecture code declares every parameter through
/// one sink, so the same enumeration serves counting (<see cref="ShapeOnlyParameters"/>), small models held in memory
/// (<see cref="RandomParameters"/>) and large ones streamed to an external data file (<see cref="StreamedRandomParameters"/>).
/// </summary>
public abstract class ParameterSink
{
    private readonly List<ParameterInfo> _declared = [];

    /// <summary>The parameters declared so far, in declaration order.</summary>
    public IReadOnlyList<ParameterInfo> Declared => _declared;

    /// <summary>Total element count of the declared parameters.</summary>
    public long Count => _declared.Sum(p => p.Count);

    /// <summary>Declares <paramref name="parameter"/> and returns the graph value that holds it.</summary>
    public string Declare(GraphBuilder builder, ParameterInfo parameter)
    {
        _declared.Add(parameter);
        return Create(builder, parameter);
    }

    protected abstract string Create(GraphBuilder builder, ParameterInfo parameter);

    /// <summary>The seed of one parameter's random stream: the user's seed mixed with the parameter's name, so values do not depend on declaration order.</summary>
    public static ulong SeedFor(ulong seed, string name) => SeededRandom.Mix(seed ^ SeededRandom.SeedFrom(name));

    /// <summary>Fills <paramref name="destination"/> with elements [<paramref name="first"/>, …) of the parameter's values.</summary>
    internal static void Fill(ParameterInfo p, ulong seed, Span<float> destination, long first)
    {
        switch (p.Init)
        {
            case ParameterInit.Random: SeededRandom.FillUniform(destination, p.Scale, SeedFor(seed, p.Name), first); break;
            case ParameterInit.Ones: destination.Fill(1f); break;
            default: destination.Clear(); break;
        }
    }
}

/// <summary>
/// Records shapes only: each parameter becomes a graph input of its shape (so the graph stays well-formed) and no weight is
/// made. Counting a full SD 1.5 UNet this way takes milliseconds and no weight memory.
/// </summary>
public sealed class ShapeOnlyParameters : ParameterSink
{
    protected override string Create(GraphBuilder builder, ParameterInfo parameter) =>
        builder.Input(parameter.Name, DT.Float, parameter.Shape.Select(d => (Dim)d).ToArray());
}

/// <summary>Seeded random weights held in memory as initializers (fine for test-size models; a full UNet needs <see cref="StreamedRandomParameters"/>).</summary>
public sealed class RandomParameters(ulong seed) : ParameterSink
{
    protected override string Create(GraphBuilder builder, ParameterInfo p)
    {
        if (p.Init == ParameterInit.Random) return builder.Random(p.Name, p.Shape, p.Scale, SeedFor(seed, p.Name));
        var values = new float[p.Count];
        Fill(p, seed, values, 0);
        return builder.Initializer<float>(p.Name, p.Shape, values);
    }
}

/// <summary>
/// Seeded random weights streamed to an external data file as they are declared, so only one chunk of weights is ever in
/// memory: parameters of at least <see cref="OnnxSaveOptions.ExternalThresholdBytes"/> bytes go to the data file (each
/// aligned as the options say), smaller ones inline. The values equal <see cref="RandomParameters"/>'s for the same seed.
/// The data file is written under a temporary name; <see cref="Commit"/> renames it into place, disposing without it deletes it.
/// </summary>
public sealed class StreamedRandomParameters : ParameterSink, IDisposable
{
    private const int ChunkFloats = 1 << 20; // 4 MiB of weights at a time
    private readonly ulong _seed;
    private readonly ExternalDataWriter _writer;
    private readonly float[] _buffer = new float[ChunkFloats];

    /// <param name="seed">The weights' seed.</param>
    /// <param name="modelPath">The .onnx file the weights belong to; the data file lies beside it.</param>
    /// <param name="options">External data options: threshold, data file name (default: model file name + "_data", as optimum names it), alignment.</param>
    public StreamedRandomParameters(ulong seed, string modelPath, OnnxSaveOptions options)
    {
        _writer = new ExternalDataWriter(modelPath, options);
        _seed = seed;
    }

    /// <summary>Bytes written to the data file so far.</summary>
    public long DataBytes => _writer.DataBytes;

    protected override string Create(GraphBuilder builder, ParameterInfo p)
    {
        if (!_writer.IsExternal(p))
        {
            var values = new float[p.Count];
            Fill(p, _seed, values, 0);
            return builder.Initializer<float>(p.Name, p.Shape, values);
        }
        return _writer.Write(builder, p, ChunkFloats, (first, n) =>
        {
            FillParallel(p, first, n);
            return _buffer.AsSpan(0, n);
        });
    }

    // The two halves of a chunk are independent stretches of the counter-based stream: fill them on two cores.
    private void FillParallel(ParameterInfo p, long first, int n)
    {
        int half = n / 2;
        if (half < 1 << 16)
        {
            Fill(p, _seed, _buffer.AsSpan(0, n), first);
            return;
        }
        Parallel.Invoke(
            () => Fill(p, _seed, _buffer.AsSpan(0, half), first),
            () => Fill(p, _seed, _buffer.AsSpan(half, n - half), first + half));
    }

    /// <summary>Flushes the data file and renames it into place; call it before writing the model file, so no model file ever lacks its data.</summary>
    public void Commit() => _writer.Commit();

    public void Dispose() => _writer.Dispose();
}

/// <summary>
/// The external data file of one model being built: float32 parameters of at least the options' threshold are appended
/// (each aligned) under a temporary name, and initializers pointing into it are returned. <see cref="Commit"/> renames the
/// file into place; disposing without it deletes it. Shared by every sink that streams weights (random or from a checkpoint).
/// </summary>
internal sealed class ExternalDataWriter : IDisposable
{
    private readonly OnnxSaveOptions _options;
    private readonly string _dataName;
    private readonly string _dataPath;
    private readonly string _tmpPath;
    private readonly FileStream _data;
    private bool _committed;

    public ExternalDataWriter(string modelPath, OnnxSaveOptions options)
    {
        if (!options.ExternalData) throw new InvalidArgumentException(nameof(options), "streamed weights need external data options (OnnxSaveOptions.External)");
        if (options.Alignment <= 0) throw new InvalidArgumentException(nameof(options), "alignment must be positive");
        _options = options;
        string full = Path.GetFullPath(modelPath);
        _dataName = options.DataFileName ?? Path.GetFileName(full) + "_data";
        _dataPath = Path.Combine(Path.GetDirectoryName(full)!, _dataName);
        Directory.CreateDirectory(Path.GetDirectoryName(_dataPath)!);
        _tmpPath = _dataPath + $".tmp-{Environment.ProcessId}";
        _data = new FileStream(_tmpPath, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
    }

    /// <summary>Bytes written to the data file so far.</summary>
    public long DataBytes => _data.Length;

    /// <summary>Whether <paramref name="p"/> is large enough to go to the data file (smaller ones stay inline).</summary>
    public bool IsExternal(ParameterInfo p) => p.Bytes >= _options.ExternalThresholdBytes;

    /// <summary>
    /// Appends <paramref name="p"/>'s values, asked of <paramref name="chunk"/> (first element, count ≤ <paramref name="chunkFloats"/>)
    /// one chunk at a time, and returns the external initializer.
    /// </summary>
    public string Write(GraphBuilder builder, ParameterInfo p, int chunkFloats, Func<long, int, ReadOnlySpan<float>> chunk)
    {
        long offset = Align();
        long count = p.Count;
        for (long first = 0; first < count; first += chunkFloats)
        {
            int n = (int)Math.Min(chunkFloats, count - first);
            var values = chunk(first, n);
            if (values.Length != n) throw new InvalidOperationException($"chunk of {p.Name} has {values.Length} values, not {n}");
            _data.Write(MemoryMarshal.AsBytes(values));
        }
        return Initializer(builder, p.Name, p.Shape, DT.Float, offset, p.Bytes);
    }

    /// <summary>Appends a tensor of another element type (float16 weights kept as stored) whose little-endian bytes are <paramref name="bytes"/>, and returns the external initializer.</summary>
    public string Write(GraphBuilder builder, string name, long[] shape, DT type, ReadOnlySpan<byte> bytes)
    {
        long offset = Align();
        _data.Write(bytes);
        return Initializer(builder, name, shape, type, offset, bytes.Length);
    }

    private long Align()
    {
        if (_committed) throw new InvalidOperationException("the data file is already committed");
        long offset = (_data.Position + _options.Alignment - 1) / _options.Alignment * _options.Alignment;
        _data.SetLength(offset);
        _data.Position = offset;
        return offset;
    }

    private string Initializer(GraphBuilder builder, string name, long[] shape, DT type, long offset, long length)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, DataLocation = TensorProto.Types.DataLocation.External };
        tensor.Dims.AddRange(shape);
        tensor.ExternalData.Add(Entry("location", _dataName));
        tensor.ExternalData.Add(Entry("offset", offset.ToString(CultureInfo.InvariantCulture)));
        tensor.ExternalData.Add(Entry("length", length.ToString(CultureInfo.InvariantCulture)));
        return builder.Initializer(tensor);
    }

    private static StringStringEntryProto Entry(string key, string value) => new() { Key = key, Value = value };

    public void Commit()
    {
        if (_committed) return;
        _data.Flush(flushToDisk: false);
        _data.Dispose();
        File.Move(_tmpPath, _dataPath, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        _data.Dispose();
        if (!_committed && File.Exists(_tmpPath)) File.Delete(_tmpPath);
    }
}

/// <summary>Writes a model whose weights are already in place (inline, or external via <see cref="StreamedRandomParameters"/>).</summary>
internal static class ModelFiles
{
    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> through a temporary file renamed into place when complete.</summary>
    public static void WriteProto(ModelProto model, string path)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = full + $".tmp-{Environment.ProcessId}";
        try
        {
            using (var output = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                model.WriteTo(output);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
