using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

public sealed record ValueSummary(string Name, string Type, IReadOnlyList<string> Shape);

/// <summary>The initializers of one dtype: how many tensors, how many values they store (elements) and in how many bytes.</summary>
public sealed record DtypeTotal(string Dtype, long Tensors, long Values, long Bytes);

public sealed record InitializerSummary(string Name, string Dtype, IReadOnlyList<long> Shape, long Bytes, bool External);

public sealed record ExternalFileSummary(string Location, long Bytes, int Tensors);

/// <summary>
/// Weight compression found in a graph: the decompression subgraphs that feed weights, by kind; ComputedWeights counts
/// Conv/MatMul/Gemm weights computed from initializers through any decompression op (pruned weights scattered back with
/// CumSum/Gather/Where included).
/// </summary>
public sealed record CompressionSummary(int DequantizeLinear, int LookupTables, int MatMulNBits, int ScatteredSparse, long CompressedWeightBytes,
    int ComputedWeights = 0)
{
    public bool Compressed => DequantizeLinear + LookupTables + MatMulNBits + ScatteredSparse + ComputedWeights > 0;
}

/// <param name="ParameterCount">
/// The model's parameters: for an uncompressed model the values its initializers store; for a compressed one the count once
/// its weights are rebuilt (worked out from the graph: DequantizeLinear, palette and pruning shapes, MatMulNBits K·N), null
/// when the graph does not tell. The values actually stored are <see cref="StoredValueCount"/>, by dtype in <see cref="ByDtype"/>.
/// </param>
/// <param name="ParameterBytes">The bytes the initializers take (stored, so compressed sizes for a compressed model).</param>
public sealed record ModelInspection(
    string Path,
    long IrVersion,
    string Producer,
    IReadOnlyList<string> Opsets,
    IReadOnlyList<ValueSummary> Inputs,
    IReadOnlyList<ValueSummary> Outputs,
    int NodeCount,
    IReadOnlyList<KeyValuePair<string, int>> OpHistogram,
    long? ParameterCount,
    long ParameterBytes,
    IReadOnlyList<DtypeTotal> ByDtype,
    IReadOnlyList<InitializerSummary> LargestInitializers,
    IReadOnlyList<ExternalFileSummary> ExternalDataFiles,
    CompressionSummary Compression,
    long FileBytes)
{
    /// <summary>The values (elements) the initializers store, whatever their dtype: quantized codes, palettes, scales, masks, floats.</summary>
    public long StoredValueCount => ByDtype.Sum(d => d.Values);
}

/// <summary>Summarises one ONNX model without reading its weights: everything comes from the protobuf and the external references.</summary>
public static class ModelInspector
{
    public static ModelInspection Inspect(string path)
    {
        using var model = OnnxModel.Load(path);
        return Inspect(model);
    }

    public static ModelInspection Inspect(OnnxModel model)
    {
        var graph = model.Graph;
        var graphs = OnnxGraphs.WithSubgraphs(graph).ToList();
        var nodes = graphs.SelectMany(g => g.Node).ToList();
        var histogram = nodes.GroupBy(n => string.IsNullOrEmpty(n.Domain) || n.Domain == "ai.onnx" ? n.OpType : $"{n.Domain}.{n.OpType}")
            .Select(g => new KeyValuePair<string, int>(g.Key, g.Count()))
            .OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).ToList();

        var initializers = graphs.SelectMany(g => g.Initializer).ToList();
        var initializerNames = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var sizes = initializers.Select(t => (Tensor: t, Elements: TensorData.ElementCount(t, model.File), Bytes: ByteSize(t, model.File))).ToList();
        var byDtype = sizes.GroupBy(s => DataTypes.Name(s.Tensor.DataType))
            .Select(g => new DtypeTotal(g.Key, g.Count(), g.Sum(s => s.Elements), g.Sum(s => s.Bytes)))
            .OrderByDescending(d => d.Bytes).ToList();
        var largest = sizes.OrderByDescending(s => s.Bytes).ThenBy(s => s.Tensor.Name, StringComparer.Ordinal).Take(10)
            .Select(s => new InitializerSummary(s.Tensor.Name, DataTypes.Name(s.Tensor.DataType), s.Tensor.Dims.ToList(), s.Bytes, ExternalDataFiles.IsExternal(s.Tensor)))
            .ToList();
        var external = initializers.Where(ExternalDataFiles.IsExternal)
            .Select(t => model.External.Resolve(t))
            .GroupBy(w => w.Location)
            .Select(g => new ExternalFileSummary(g.Key, new FileInfo(g.First().FullPath).Length, g.Count()))
            .OrderBy(f => f.Location, StringComparer.Ordinal).ToList();

        string file = model.File;
        var compression = DetectCompression(graph, model.File);
        long stored = sizes.Sum(s => s.Elements);
        long? parameters = compression.Compressed ? DecompressedParameters.Count(graph, t =>
        {
            try { return TensorData.Read<long>(t, model.External, model.File); }
            catch (Exception e) when (e is EdgeDiffusionException or IOException) { return null; }
        }) : stored;
        return new ModelInspection(
            file,
            model.Proto.IrVersion,
            string.Join(" ", new[] { model.Proto.ProducerName, model.Proto.ProducerVersion }.Where(s => !string.IsNullOrEmpty(s))),
            model.Proto.OpsetImport.Select(o => $"{(string.IsNullOrEmpty(o.Domain) ? "ai.onnx" : o.Domain)} {o.Version}").ToList(),
            graph.Input.Where(i => !initializerNames.Contains(i.Name)).Select(Summarise).ToList(),
            graph.Output.Select(Summarise).ToList(),
            nodes.Count,
            histogram,
            parameters,
            sizes.Sum(s => s.Bytes),
            byDtype,
            largest,
            external,
            compression,
            System.IO.File.Exists(file) ? new FileInfo(file).Length : 0);
    }

    private static long ByteSize(TensorProto t, string file)
    {
        long raw = TensorData.RawByteCount(t, file);
        return raw >= 0 ? raw : t.StringData.Sum(s => (long)s.Length);
    }

    /// <summary>
    /// Weight decompression patterns: DequantizeLinear whose data input is an initializer; Gather from an initializer
    /// table with indices computed from constants alone and many more indices than table rows (a palette look-up, not an
    /// embedding or position table); com.microsoft MatMulNBits; ScatterElements/ScatterND writing initializer values into
    /// a dense tensor (compactly stored pruning).
    /// </summary>
    public static CompressionSummary DetectCompression(GraphProto graph, string file = "")
    {
        var initializers = OnnxGraphs.AllInitializers(graph).GroupBy(t => t.Name).ToDictionary(g => g.Key, g => g.First());
        var constantSize = ConstantAncestry(graph, initializers);
        int dq = 0, lut = 0, nbits = 0, scatter = 0;
        long bytes = 0;
        foreach (var node in OnnxGraphs.WithSubgraphs(graph).SelectMany(g => g.Node))
        {
            string? weight = null;
            switch (node.OpType)
            {
                case "DequantizeLinear" when node.Input.Count > 0 && initializers.ContainsKey(node.Input[0]):
                    dq++; weight = node.Input[0]; break;
                case "Gather" when node.Input.Count > 1 && initializers.TryGetValue(node.Input[0], out var table) && table.Dims.Count > 0
                                   && constantSize.TryGetValue(node.Input[1], out long indices) && indices >= 4 * table.Dims[0]:
                    lut++; weight = node.Input[1]; break;
                case "MatMulNBits" when node.Domain == "com.microsoft" && node.Input.Count > 1:
                    nbits++; weight = node.Input[1]; break;
                case "ScatterElements" or "ScatterND" when node.Input.Count > 2 && initializers.ContainsKey(node.Input[2]):
                    scatter++; weight = node.Input[2]; break;
            }
            if (weight is not null && initializers.TryGetValue(weight, out var t)) bytes += Math.Max(0, TensorData.RawByteCount(t, file));
        }
        return new CompressionSummary(dq, lut, nbits, scatter, bytes, ComputedWeights(graph));
    }

    private static readonly HashSet<string> DecompressionOps = new(StringComparer.Ordinal)
    {
        "DequantizeLinear", "Gather", "GatherElements", "BitShift", "BitwiseAnd", "BitwiseOr", "CumSum", "Where", "ScatterElements", "ScatterND",
    };

    /// <summary>
    /// The graph's constant nodes, in order — every input an initializer or another constant node's output, no subgraph,
    /// not random — and for each initializer and constant value whether a decompression op (DequantizeLinear, a look-up,
    /// bit unpacking, a scatter) is among its producers: true marks a weight the graph rebuilds from compressed storage.
    /// </summary>
    public static (IReadOnlyList<NodeProto> Nodes, IReadOnlyDictionary<string, bool> Decompressed) DecompressionConstants(GraphProto graph)
    {
        var decompressed = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) decompressed[t.Name] = false;
        var nodes = new List<NodeProto>();
        foreach (var node in graph.Node)
        {
            bool isConstant = node.Attribute.All(a => a.G is null && a.Graphs.Count == 0) && !node.OpType.StartsWith("Random", StringComparison.Ordinal)
                && node.Input.All(i => i.Length == 0 || decompressed.ContainsKey(i)) && (node.Input.Count > 0 || node.OpType == "Constant");
            if (!isConstant) continue;
            bool result = DecompressionOps.Contains(node.OpType) || node.Input.Any(i => i.Length > 0 && decompressed[i]);
            foreach (var o in node.Output) decompressed[o] = result;
            nodes.Add(node);
        }
        return (nodes, decompressed);
    }

    /// <summary>Weight inputs (Conv/MatMul/Gemm input 1) computed from initializers alone through a decompression op.</summary>
    private static int ComputedWeights(GraphProto graph)
    {
        var (_, decompressed) = DecompressionConstants(graph);
        return graph.Node.Count(node => node.OpType is "Conv" or "MatMul" or "Gemm" && node.Input.Count > 1
            && decompressed.TryGetValue(node.Input[1], out bool d) && d);
    }

    /// <summary>
    /// Values computed from initializers and constants alone (no graph input upstream), each with the element count of its
    /// largest initializer ancestor: packed palette indices are large, position ids are as small as their table.
    /// </summary>
    private static Dictionary<string, long> ConstantAncestry(GraphProto graph, Dictionary<string, TensorProto> initializers)
    {
        var size = initializers.ToDictionary(p => p.Key, p => TensorData.ElementCount(p.Value));
        foreach (var node in graph.Node)
        {
            if (node.Input.Any(i => i.Length > 0 && !size.ContainsKey(i))) continue;
            long largest = node.Input.Where(i => i.Length > 0).Select(i => size[i]).DefaultIfEmpty(node.OpType == "Constant" ? ConstantElements(node) : 0).Max();
            foreach (var output in node.Output) size[output] = largest;
        }
        return size;
    }

    private static long ConstantElements(NodeProto node) =>
        node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t ? TensorData.ElementCount(t) : 1;

    private static ValueSummary Summarise(ValueInfoProto v)
    {
        var type = v.Type;
        if (type?.TensorType is { } t)
        {
            var shape = t.Shape?.Dim.Select(d => d.ValueCase switch
            {
                TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
                TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => d.DimParam,
                _ => "?",
            }).ToList() ?? [];
            return new ValueSummary(v.Name, DataTypes.Name(t.ElemType), shape);
        }
        return new ValueSummary(v.Name, type?.ValueCase.ToString().ToLowerInvariant() ?? "unknown", []);
    }
}
