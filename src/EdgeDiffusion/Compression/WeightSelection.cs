using System.Text.RegularExpressions;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Which float32 initializers of a graph get compressed. A weight is chosen when it has at least
/// <see cref="MinimumElements"/> elements, is read by nodes of the graph (not a graph input, which callers may override),
/// and passes the filters:
/// <list type="bullet">
/// <item>op types (ONNX spelling, e.g. "Conv"): with <see cref="IncludeOpTypes"/> set, every consumer's op type must be
/// listed; a consumer whose op type is in <see cref="ExcludeOpTypes"/> rules the weight out.</item>
/// <item>names: shell-style wildcards matched against the whole initializer name, case-sensitive: <c>*</c> any run of
/// characters (dots included), <c>?</c> one character; e.g. <c>*attn*.weight</c>. With <see cref="IncludeNames"/> set a
/// name must match one of them; matching an <see cref="ExcludeNames"/> pattern rules it out.</item>
/// <item>embeddings (the data input of a Gather), normalisation parameters (inputs 1+ of Layer/Group/Instance/Batch
/// normalization, and any 1-D tensor they read) and biases (Conv input 2, Gemm C) are left alone unless asked for:
/// they are small, and lookups and normalisation are sensitive to error. So are all 1-D tensors (biases and
/// normalisation parameters of decomposed layers, read by plain Mul/Add).</item>
/// </list>
/// </summary>
public sealed record WeightSelection
{
    /// <summary>Weights with fewer elements stay float (their scales would cost more than they save).</summary>
    public long MinimumElements { get; init; } = 2048;

    public IReadOnlyList<string> IncludeOpTypes { get; init; } = [];
    public IReadOnlyList<string> ExcludeOpTypes { get; init; } = [];
    public IReadOnlyList<string> IncludeNames { get; init; } = [];
    public IReadOnlyList<string> ExcludeNames { get; init; } = [];

    public bool IncludeEmbeddings { get; init; }
    public bool IncludeNormalization { get; init; }
    public bool IncludeBiases { get; init; }

    public static WeightSelection Default { get; } = new();

    private static readonly HashSet<string> NormalizationOps = new(StringComparer.Ordinal)
    {
        "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    };

    /// <summary>Throws <see cref="InvalidArgumentException"/> naming the first bad option (as the CLI spells it).</summary>
    public WeightSelection Validate()
    {
        if (MinimumElements < 0) throw new InvalidArgumentException("--min-elements", $"{MinimumElements} must be 0 or more");
        foreach (var op in IncludeOpTypes) OnnxOperators.RequireKnown(op, "--include-op");
        foreach (var op in ExcludeOpTypes) OnnxOperators.RequireKnown(op, "--exclude-op");
        foreach (var (patterns, option) in new[] { (IncludeNames, "--include-name"), (ExcludeNames, "--exclude-name") })
            foreach (var p in patterns)
                if (string.IsNullOrEmpty(p)) throw new InvalidArgumentException(option, "an empty pattern matches nothing; use * for every name");
        return this;
    }

    /// <summary>The weights of <paramref name="graph"/> this selection chooses, in initializer order, with their readers.</summary>
    public IReadOnlyList<WeightUse> Select(GraphProto graph) => Select(new GraphEditor(graph));

    /// <inheritdoc cref="Select(GraphProto)"/>
    public IReadOnlyList<WeightUse> Select(GraphEditor editor)
    {
        Validate();
        var include = WildcardRegex(IncludeNames);
        var exclude = WildcardRegex(ExcludeNames);
        var result = new List<WeightUse>();
        foreach (var tensor in editor.Graph.Initializer)
        {
            if (SkipReason(editor, tensor, include, exclude, out var use) is null) result.Add(use!);
        }
        return result;
    }

    /// <summary>Why <paramref name="name"/> is not selected (one line), or null when it is.</summary>
    public string? SkipReason(GraphEditor editor, string name)
    {
        Validate();
        var tensor = editor.FindInitializer(name);
        if (tensor is null) return "not an initializer of the graph";
        return SkipReason(editor, tensor, WildcardRegex(IncludeNames), WildcardRegex(ExcludeNames), out _);
    }

    private string? SkipReason(GraphEditor editor, TensorProto tensor, Regex? include, Regex? exclude, out WeightUse? use)
    {
        use = null;
        if (tensor.DataType != (int)DT.Float) return $"{DataTypes.Name(tensor.DataType)}, not float32";
        long count = TensorData.ElementCount(tensor);
        if (count < MinimumElements) return $"{count} elements, under the minimum of {MinimumElements}";
        if (editor.IsGraphInput(tensor.Name)) return "also a graph input (callers may override it)";
        if (include is not null && !include.IsMatch(tensor.Name)) return "name matches no include pattern";
        if (exclude is not null && exclude.IsMatch(tensor.Name)) return "name matches an exclude pattern";

        // A 1-D tensor is a bias or a normalisation scale/shift however the graph spells it (decomposed GroupNorm ends in
        // Mul/Add): tiny next to the matrices, and error there shifts whole channels.
        if (tensor.Dims.Count <= 1 && !IncludeBiases && !IncludeNormalization)
            return "a 1-D tensor (bias or normalisation scale/shift)";

        var uses = editor.Uses(tensor.Name);
        if (uses.Count == 0) return "read by no node";
        var consumers = new List<WeightConsumer>();
        foreach (var u in uses)
        {
            if (u.Node is null) return "a subgraph outputs it";
            if (!ReferenceEquals(u.Graph, editor.Graph)) return "read inside a subgraph";
            var node = u.Node;
            if (!string.IsNullOrEmpty(node.Domain) && node.Domain != "ai.onnx") return $"read by {node.Domain}.{node.OpType}";
            if (!IncludeEmbeddings && node.OpType == "Gather" && u.Index == 0) return "an embedding table (Gather data)";
            if (!IncludeNormalization && NormalizationOps.Contains(node.OpType) && (u.Index > 0 || tensor.Dims.Count == 1))
                return $"a normalisation parameter ({node.OpType})";
            if (!IncludeBiases && u.Index == 2 && node.OpType is "Conv" or "Gemm") return $"a bias ({node.OpType})";
            if (IncludeOpTypes.Count > 0 && !IncludeOpTypes.Contains(node.OpType)) return $"read by {node.OpType}, not an included op type";
            if (ExcludeOpTypes.Contains(node.OpType)) return $"read by {node.OpType}, an excluded op type";
            bool transB = node.OpType == "Gemm" && node.Attribute.Any(a => a.Name == "transB" && a.I != 0);
            consumers.Add(new WeightConsumer(node.Name, node.OpType, u.Index, transB));
        }
        use = new WeightUse(tensor.Name, [.. tensor.Dims], consumers);
        return null;
    }

    /// <summary>One regex matching any of the wildcard patterns over the whole name; null when there are none.</summary>
    internal static Regex? WildcardRegex(IReadOnlyList<string> patterns)
    {
        if (patterns.Count == 0) return null;
        var alternatives = patterns.Select(p => Regex.Escape(p).Replace(@"\*", ".*", StringComparison.Ordinal).Replace(@"\?", ".", StringComparison.Ordinal));
        return new Regex($"^(?:{string.Join('|', alternatives)})$", RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }
}
