using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// The load decompression mode done lean: the model's weight-decompression subgraphs (nodes computed from initializers
/// alone that involve a decompression op) run once in a small session of their own; the real session is then created
/// from the graph without them, the float32 weights written to a temporary external-data file it reads. ONNX Runtime's
/// own constant folding does the same job but, measured on a 6-bit SD1.5 UNet, held 10 GiB after session creation
/// (14.7 GiB peak) for 3.3 GB of float32 weights.
/// </summary>
internal sealed class WeightExpansion : IDisposable
{
    private WeightExpansion(byte[] model, string dataFile)
    {
        Model = model;
        DataFile = dataFile;
    }

    /// <summary>The graph without its decompression nodes; the expanded weights are external data in <see cref="DataFile"/>.</summary>
    public byte[] Model { get; }

    /// <summary>A temporary file holding the expanded float32 weights (deleted on dispose, or at once where the OS allows).</summary>
    public string DataFile { get; }

    /// <summary>Points the session at the folder of <see cref="DataFile"/> (the model is loaded from bytes).</summary>
    public void AddTo(SessionOptions options) =>
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(DataFile)!);

    /// <summary>Null when the model has no decompression subgraphs (nothing to expand).</summary>
    public static WeightExpansion? TryCreate(string modelPath, int threads)
    {
        using var model = OnnxModel.Load(modelPath);
        var graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);

        var (constantNodes, constant) = ModelInspector.DecompressionConstants(graph);

        // Expanded weights: decompressed constants read by the rest of the graph (or returned by it).
        var constantNodeSet = new HashSet<NodeProto>(constantNodes, ReferenceEqualityComparer.Instance);
        var expanded = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Node.Where(n => !constantNodeSet.Contains(n)))
            foreach (var i in node.Input)
                if (i.Length > 0 && !initializers.ContainsKey(i) && constant.TryGetValue(i, out bool d) && d && seen.Add(i)) expanded.Add(i);
        foreach (var o in graph.Output)
            if (!initializers.ContainsKey(o.Name) && constant.TryGetValue(o.Name, out bool d) && d && seen.Add(o.Name)) expanded.Add(o.Name);
        if (expanded.Count == 0) return null;

        var (decompression, needed) = DecompressionModel(model, constantNodes, expanded);

        // The main graph: decompression nodes gone, each expanded weight external data in a temporary file that the
        // side session's outputs are streamed into (ONNX Runtime's copy of each freed at once).
        var main = model.Proto.Clone();
        main.Graph.Node.Clear();
        main.Graph.Node.AddRange(graph.Node.Where(n => !needed.Contains(n)).Select(n => n.Clone()));
        var stillRead = new HashSet<string>(main.Graph.Node.SelectMany(n => n.Input).Concat(graph.Output.Select(o => o.Name)), StringComparer.Ordinal);
        main.Graph.Initializer.Clear();
        foreach (var t in graph.Initializer.Where(t => stillRead.Contains(t.Name))) main.Graph.Initializer.Add(model.Inlined(t));

        string folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "edgediffusion-expanded")).FullName;
        string file = Path.Combine(folder, $"{Guid.NewGuid():N}.bin");
        try
        {
            using (var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR })
            using (var stream = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.Read, 1 << 20))
            {
                // Plain evaluation: optimizing a graph that runs once would only do the work twice.
                options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL;
                using var session = new InferenceSession(decompression.ToByteArray(), options);
                using var runOptions = new RunOptions();
                using var outputs = session.Run(runOptions, [], [], expanded);
                for (int i = 0; i < expanded.Count; i++)
                {
                    var info = outputs[i].GetTensorTypeAndShape();
                    long offset = (stream.Position + 4095) / 4096 * 4096;
                    stream.SetLength(offset);
                    stream.Position = offset;
                    var bytes = outputs[i].GetTensorMutableRawData();
                    stream.Write(bytes);
                    var tensor = new TensorProto { Name = expanded[i], DataType = (int)info.ElementDataType, DataLocation = TensorProto.Types.DataLocation.External };
                    tensor.Dims.AddRange(info.Shape);
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = Path.GetFileName(file) });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                    main.Graph.Initializer.Add(tensor);
                    outputs[i].Dispose();
                }
            }
            return new WeightExpansion(main.ToByteArray(), file);
        }
        catch
        {
            TryDelete(file);
            throw;
        }
    }

    /// <summary>
    /// The nodes computing <paramref name="outputs"/> from initializers (and nothing else) with the initializers they read,
    /// inlined, as a model of its own whose outputs are those values; and the set of those nodes.
    /// </summary>
    internal static (ModelProto Model, HashSet<NodeProto> Nodes) DecompressionModel(OnnxModel model, IReadOnlyList<NodeProto> constantNodes, IReadOnlyList<string> outputs)
    {
        var graph = model.Graph;
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var node in constantNodes) foreach (var o in node.Output) producer[o] = node;
        var needed = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<string>(outputs);
        while (stack.Count > 0)
            if (producer.TryGetValue(stack.Pop(), out var node) && needed.Add(node))
                foreach (var i in node.Input) if (i.Length > 0) stack.Push(i);

        var decompression = new ModelProto { IrVersion = model.Proto.IrVersion, Graph = new GraphProto { Name = "weights" } };
        decompression.OpsetImport.AddRange(model.Proto.OpsetImport);
        decompression.Graph.Node.AddRange(graph.Node.Where(needed.Contains));
        var read = new HashSet<string>(needed.SelectMany(n => n.Input), StringComparer.Ordinal);
        foreach (var t in graph.Initializer.Where(t => read.Contains(t.Name))) decompression.Graph.Initializer.Add(model.Inlined(t));
        foreach (var name in outputs) decompression.Graph.Output.Add(new ValueInfoProto { Name = name });
        return (decompression, needed);
    }

    internal static void TryDelete(string file)
    {
        try { File.Delete(file); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public void Dispose() => TryDelete(DataFile);
}

/// <summary>A session over expanded weights; the temporary weight file goes when the session does (or at once where the OS allows).</summary>
internal sealed class ExpandedWeightsSession : InferenceSession
{
    private readonly WeightExpansion _expansion;

    public ExpandedWeightsSession(byte[] model, SessionOptions options, WeightExpansion expansion) : base(model, options)
    {
        _expansion = expansion;
        // ONNX Runtime has read or mapped the weights by now; on Linux and macOS the file can go at once.
        if (!OperatingSystem.IsWindows()) expansion.Dispose();
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _expansion.Dispose();
    }
}
