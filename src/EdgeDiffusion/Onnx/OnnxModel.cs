using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>
/// An ONNX model in memory: the protobuf message plus access to weights stored in external data files.
/// Loading reads only the protobuf; external weights stay on disk until a tensor is read.
/// </summary>
public sealed class OnnxModel : IDisposable
{
    private OnnxModel(ModelProto proto, string file, string baseDirectory)
    {
        Proto = proto;
        File = file;
        External = new ExternalDataFiles(baseDirectory, file);
    }

    /// <summary>The model message. Edits go here; <see cref="Save"/> writes them.</summary>
    public ModelProto Proto { get; }

    /// <summary>The file the model was loaded from, or a description for an in-memory model.</summary>
    public string File { get; }

    /// <summary>External data files of the model, relative to its folder.</summary>
    public ExternalDataFiles External { get; }

    public GraphProto Graph => Proto.Graph;

    /// <summary>Reads and checks a model file: it must parse as ONNX, hold a graph, and every external reference must point inside an existing file.</summary>
    public static OnnxModel Load(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new OnnxFormatException(path, "is a folder; pass a .onnx file (or a model folder to a command that takes one)");
        if (!System.IO.File.Exists(full))
            throw new OnnxFormatException(path, "file not found; check the path");
        byte[] bytes;
        try { bytes = System.IO.File.ReadAllBytes(full); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException(path, $"cannot be read: {e.Message}");
        }
        catch (OutOfMemoryException)
        {
            throw new OnnxFormatException(path, "is over 2 GB inline; ONNX files that large must keep their weights in external data files");
        }
        ModelProto proto;
        try { proto = ModelProto.Parser.ParseFrom(bytes); }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxFormatException(path, $"is not a valid ONNX file ({e.Message.TrimEnd('.')}); the file is corrupt or truncated, re-export or re-download it", e);
        }
        var model = new OnnxModel(proto, path, Path.GetDirectoryName(full)!);
        try { model.Validate(); }
        catch { model.Dispose(); throw; }
        return model;
    }

    /// <summary>
    /// The graph of the model at <paramref name="path"/> (nodes, inputs, outputs) with its initializers' names, types,
    /// shapes and locations but no data: weight bytes are skipped while reading, never copied, so asking what a 500 MB
    /// inline model holds costs a pass over the file, not its size in memory twice.
    /// </summary>
    public static GraphProto ReadGraphOutline(string path) => ReadOutline(path, out _);

    /// <summary>The graph outline (see <see cref="ReadGraphOutline"/>) and the model's metadata_props.</summary>
    public static GraphProto ReadOutline(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        ModelOutline outline;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            outline = ModelOutline.Parser.WithDiscardUnknownFields(true).ParseFrom(stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException(path, $"cannot be read: {e.Message}");
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxFormatException(path, $"is not a valid ONNX file ({e.Message.TrimEnd('.')}); the file is corrupt or truncated, re-export or re-download it", e);
        }
        var props = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in outline.MetadataProps) props[p.Key] = p.Value;
        metadata = props;
        var graph = new GraphProto { Name = outline.Graph?.Name ?? "" };
        if (outline.Graph is not { } g) return graph;
        graph.Node.AddRange(g.Node);
        graph.Input.AddRange(g.Input);
        graph.Output.AddRange(g.Output);
        foreach (var t in g.Initializer)
        {
            var tensor = new TensorProto { Name = t.Name, DataType = t.DataType };
            if (t.HasDataLocation) tensor.DataLocation = t.DataLocation;
            tensor.Dims.AddRange(t.Dims);
            tensor.ExternalData.AddRange(t.ExternalData);
            graph.Initializer.Add(tensor);
        }
        return graph;
    }

    /// <summary>Wraps a model message built in memory; external references resolve against <paramref name="baseDirectory"/>.</summary>
    public static OnnxModel FromProto(ModelProto proto, string? baseDirectory = null, string description = "<in-memory model>") =>
        new(proto, description, Path.GetFullPath(baseDirectory ?? Directory.GetCurrentDirectory()));

    private void Validate()
    {
        if (Proto.Graph is null)
            throw new OnnxFormatException(File, "holds no graph; it is not an ONNX model or it is truncated");
        if (!Proto.HasIrVersion)
            throw new OnnxFormatException(File, "has no ir_version; it is not an ONNX model or it is corrupt");
        foreach (var tensor in OnnxGraphs.AllTensors(Proto))
        {
            if (!ExternalDataFiles.IsExternal(tensor)) continue;
            long need = TensorData.RawByteCount(tensor, File);
            var where = External.Resolve(tensor);
            if (need >= 0 && where.Length != need)
                throw ExternalDataFiles.Problem(where.FullPath, tensor, $"external length is {where.Length} bytes but its shape and type need {need}; the data file belongs to another model");
        }
    }

    /// <summary>Raw little-endian bytes of a tensor of this model.</summary>
    public byte[] ReadRawBytes(TensorProto tensor) => TensorData.ReadRawBytes(tensor, External, File);

    /// <summary>Values of a tensor of this model as its own element type.</summary>
    public T[] Read<T>(TensorProto tensor) where T : unmanaged => TensorData.Read<T>(tensor, External, File);

    /// <summary>Values of a numeric tensor of this model converted to float32.</summary>
    public float[] ReadAsFloat(TensorProto tensor) => TensorData.ReadAsFloat(tensor, External, File);

    /// <summary>The tensor with its data inline: a copy when the data lives in an external file, the same object otherwise.</summary>
    public TensorProto Inlined(TensorProto tensor)
    {
        if (tensor.DataLocation != TensorProto.Types.DataLocation.External) return tensor;
        var inline = tensor.Clone();
        inline.RawData = Google.Protobuf.ByteString.CopyFrom(ReadRawBytes(tensor));
        inline.ExternalData.Clear();
        inline.ClearDataLocation();
        return inline;
    }

    /// <summary>
    /// Writes the model to <paramref name="path"/> (and its data file), through temporary files that are renamed
    /// into place only when complete. The in-memory model is not changed.
    /// </summary>
    public void Save(string path, OnnxSaveOptions? options = null)
    {
        options ??= OnnxSaveOptions.Inline;
        if (options.Alignment <= 0) throw new ArgumentOutOfRangeException(nameof(options), "alignment must be positive");
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        string dataName = options.DataFileName ?? Path.GetFileName(full) + ".data";
        string dataPath = Path.Combine(directory, dataName);
        string tmpModel = full + $".tmp-{Environment.ProcessId}";
        string tmpData = dataPath + $".tmp-{Environment.ProcessId}";

        var copy = Proto.Clone();
        bool wroteData = false;
        var written = new HashSet<TensorProto>(ReferenceEqualityComparer.Instance);
        try
        {
            long inlineBytes = 0;
            using (var data = options.ExternalData ? new FileStream(tmpData, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16) : null)
            {
                foreach (var tensor in OnnxGraphs.AllInitializers(copy.Graph))
                {
                    long size = TensorData.RawByteCount(tensor, File);
                    if (size < 0) continue; // strings stay where they are
                    bool external = ExternalDataFiles.IsExternal(tensor);
                    if (data is not null && size >= options.ExternalThresholdBytes)
                    {
                        long offset = (data.Position + options.Alignment - 1) / options.Alignment * options.Alignment;
                        data.Write(Padding(options.Alignment)[..(int)(offset - data.Position)]);
                        TensorData.WriteRawBytesTo(tensor, External, File, data);
                        TensorData.ClearData(tensor);
                        tensor.DataLocation = TensorProto.Types.DataLocation.External;
                        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataName });
                        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = size.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                        written.Add(tensor);
                        wroteData = true;
                    }
                    else if (external)
                    {
                        var bytes = ReadRawBytes(tensor);
                        TensorData.ClearData(tensor);
                        tensor.RawData = ByteString.CopyFrom(bytes);
                        inlineBytes += size;
                    }
                }
                // Tensors in attributes (Constant values) that were external come inline: only initializers go to the data file.
                foreach (var tensor in OnnxGraphs.AllTensors(copy).Where(t => ExternalDataFiles.IsExternal(t) && !written.Contains(t)).ToList())
                {
                    var bytes = ReadRawBytes(tensor);
                    TensorData.ClearData(tensor);
                    tensor.RawData = ByteString.CopyFrom(bytes);
                }
            }
            long protoSize = copy.CalculateSize();
            if (protoSize < 0 || protoSize > int.MaxValue || inlineBytes > int.MaxValue)
                throw new OnnxFormatException(path, "would be over the 2 GB protobuf limit inline; save with external data (OnnxSaveOptions.External)");
            using (var output = new FileStream(tmpModel, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                copy.WriteTo(output);
            if (wroteData) System.IO.File.Move(tmpData, dataPath, overwrite: true);
            System.IO.File.Move(tmpModel, full, overwrite: true);
        }
        finally
        {
            if (System.IO.File.Exists(tmpData)) System.IO.File.Delete(tmpData);
            if (System.IO.File.Exists(tmpModel)) System.IO.File.Delete(tmpModel);
        }
    }

    private static ReadOnlySpan<byte> Padding(int alignment) => alignment <= ZeroPage.Length ? ZeroPage : new byte[alignment];

    private static readonly byte[] ZeroPage = new byte[65536];

    /// <summary>The serialized model bytes when it has no external data (as ONNX Runtime's byte-array constructor takes).</summary>
    public byte[] ToBytes()
    {
        if (OnnxGraphs.AllTensors(Proto).Any(ExternalDataFiles.IsExternal))
            throw new InvalidOperationException($"{File} has external data; save it and load the session from the file");
        return Proto.ToByteArray();
    }

    public void Dispose() => External.Dispose();
}
