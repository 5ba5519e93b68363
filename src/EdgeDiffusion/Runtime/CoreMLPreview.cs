using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Runtime;

/// <summary>The predicted placement of one node: taken by CoreML, or why it falls back to the CPU provider.</summary>
/// <param name="Reason">The rule the node breaks, worded the same for every node breaking it (for grouping).</param>
/// <param name="Detail">The same, naming the input concerned where there is one.</param>
public sealed record CoreMLNodePrediction(string Name, string OpType, bool Supported, string? Reason, string? Detail, int Partition);

/// <summary>
/// A prediction, made without running anything, of what ONNX Runtime's CoreML EP (ML Program format) would take.
/// <see cref="Partitions"/> holds node names per partition (one compiled Core ML model each).
/// </summary>
public sealed record CoreMLPrediction(
    string Source,
    bool RequireStaticShapes,
    IReadOnlyList<CoreMLNodePrediction> Nodes,
    IReadOnlyList<IReadOnlyList<string>> Partitions)
{
    public int SupportedNodes => Nodes.Count(n => n.Supported);

    /// <summary>Where the rules come from (docs/profiling.md lists them).</summary>
    public const string RulesSource =
        "ONNX Runtime docs, CoreML Execution Provider, 'Supported operators' for ML Program (tools/ci_build/github/apple/coreml_supported_mlprogram_ops.md), " +
        "plus the input checks every CoreML op builder makes (known shapes, dimensions ≤ 16384, float inputs; RequireStaticInputShapes)";
}

/// <summary>
/// Predicts the CoreML EP's placement from its documented operator support list and constraints. It reads the graph
/// as stored (ONNX Runtime's CPU-independent level-1 rewrites can still merge a few nodes before the EP sees them).
/// Partitions are found as ONNX Runtime forms them: supported nodes are grouped in a topological walk that takes every
/// ready supported node before any unsupported one (so no partition needs its own output back through a CPU node),
/// and each group is split into its connected parts.
/// </summary>
public static class CoreMLPreview
{
    /// <summary>ai.onnx ops of the ML Program support list, with the documented note that applies (checked in <see cref="Constraint"/>).</summary>
    public static IReadOnlySet<string> SupportedOps { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "Add", "ArgMax", "AveragePool", "Cast", "Clip", "Concat", "Conv", "ConvTranspose", "Cos", "DepthToSpace", "Ceil", "Div", "Elu",
        "Erf", "Exp", "GatherND", "Gemm", "Gelu", "GlobalAveragePool", "GlobalMaxPool", "GridSample", "GroupNormalization", "HardSigmoid",
        "Identity", "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "MaxPool", "Max", "Mul", "Pow", "PRelu", "Range",
        "Reciprocal", "ReduceSum", "ReduceMean", "ReduceMax", "Relu", "Reshape", "Resize", "Round", "Shape", "Sin", "Slice", "Softplus",
        "Split", "Sub", "Sigmoid", "Softmax", "Sqrt", "Squeeze", "Tanh", "Tile", "Transpose", "Unsqueeze",
    };

    /// <summary>com.microsoft ops the list names (produced by ONNX Runtime's own fusions).</summary>
    public static IReadOnlySet<string> SupportedMicrosoftOps { get; } = new HashSet<string>(StringComparer.Ordinal) { "QuickGelu", "FusedConv" };

    // Ops whose first input may be an integer tensor: they convert or only read shapes. ONNX Runtime turns Constant
    // nodes into initializers when it loads a graph, so "constant initializer" rules accept Constant outputs too.
    private static readonly HashSet<string> IntegerInputOps = new(StringComparer.Ordinal) { "Cast", "Shape", "Range" };

    public static CoreMLPrediction Predict(string modelPath, bool requireStaticShapes = false)
    {
        using var model = Onnx.OnnxModel.Load(modelPath);
        return Predict(model.Graph, modelPath, requireStaticShapes);
    }

    public static CoreMLPrediction Predict(GraphProto graph, string source, bool requireStaticShapes = false)
    {
        var info = new ValueInfo(graph);
        // ONNX Runtime turns Constant nodes into initializers when it loads a graph: the EP never sees them as nodes.
        var nodes = graph.Node.Where(n => !(n.OpType == "Constant" && n.Domain is "" or "ai.onnx")).ToList();
        var reasons = nodes.Select(n => Check(n, info, requireStaticShapes)).ToList();
        var partitionOf = Partition(nodes, reasons.Select(r => r is null).ToList());
        var predictions = nodes.Select((n, i) => new CoreMLNodePrediction(NodeName(n, i), n.OpType, reasons[i] is null, reasons[i]?.Reason, reasons[i]?.Detail, partitionOf[i])).ToList();
        var partitions = predictions.Where(p => p.Partition >= 0).GroupBy(p => p.Partition).OrderBy(g => g.Key)
            .Select(g => (IReadOnlyList<string>)g.Select(p => p.Name).ToList()).ToList();
        return new CoreMLPrediction(source, requireStaticShapes, predictions, partitions);
    }

    private static string NodeName(NodeProto n, int index) => n.Name.Length > 0 ? n.Name : $"{n.OpType}_{index}";

    /// <summary>Null when CoreML would take the node, else the rule it breaks (generic, and with the input named).</summary>
    internal static (string Reason, string Detail)? Check(NodeProto node, ValueInfo info, bool requireStaticShapes)
    {
        bool microsoft = node.Domain == "com.microsoft";
        if (node.Domain is not ("" or "ai.onnx" or "com.microsoft") || !(microsoft ? SupportedMicrosoftOps : SupportedOps).Contains(node.OpType))
        {
            string r = $"op {(node.Domain is "" or "ai.onnx" ? "" : node.Domain + ":")}{node.OpType} is not in CoreML's ML Program support list";
            return (r, r);
        }
        foreach (var input in node.Input.Where(i => i.Length > 0))
        {
            var shape = info.Shape(input);
            if (shape is null) continue; // unknown here; ONNX Runtime's shape inference usually knows it
            if (shape.Any(d => d > 16384)) return ("an input dimension is over 16384 (Core ML fails to load such models)", $"input '{input}' has a dimension over 16384");
            if (requireStaticShapes && shape.Any(d => d < 0)) return ("dynamic input shape with RequireStaticInputShapes=1", $"input '{input}' has a dynamic shape");
        }
        if (node.Input.Count > 0 && !IntegerInputOps.Contains(node.OpType) && info.Type(node.Input[0]) is { } type && type is not (DT.Float or DT.Float16))
        {
            string t = type.ToString().ToLowerInvariant();
            return ($"{t} data input; CoreML's op builders take float32/float16", $"input '{node.Input[0]}' is {t}");
        }
        return Constraint(node, info) is { } c ? (c, c) : null;
    }

    /// <summary>The op-specific notes of the support list.</summary>
    private static string? Constraint(NodeProto node, ValueInfo info)
    {
        string? Input(int i) => node.Input.Count > i && node.Input[i].Length > 0 ? node.Input[i] : null;
        int? Rank(int i) => Input(i) is { } name ? info.Shape(name)?.Length : null;
        bool Constant(int i) => Input(i) is not { } name || info.IsConstant(name);
        var attrs = node.Attribute.ToDictionary(a => a.Name, StringComparer.Ordinal);
        switch (node.OpType)
        {
            case "Conv":
                if (Rank(1) is { } r && r is not (3 or 4)) return $"only 1D/2D Conv is supported (weight rank {r})";
                if (!Constant(2)) return "Conv bias must be constant";
                return null;
            case "ConvTranspose":
                if (!Constant(1) || !Constant(2)) return "ConvTranspose weight and bias must be constant";
                if (attrs.TryGetValue("auto_pad", out var pad) && pad.S.ToStringUtf8() is "SAME_UPPER" or "SAME_LOWER") return "ConvTranspose auto_pad SAME_UPPER/SAME_LOWER is not supported";
                if (attrs.ContainsKey("output_shape")) return "ConvTranspose output_shape is not supported";
                if (attrs.TryGetValue("output_padding", out var op) && op.Ints.Any(v => v != 0)) return "ConvTranspose output_padding must have default values";
                if (attrs.ContainsKey("kernel_shape")) return "ConvTranspose kernel_shape must have default values";
                return null;
            case "AveragePool" or "MaxPool" or "GlobalAveragePool" or "GlobalMaxPool":
                if (Rank(0) is { } pr && pr != 4) return $"only 2D pooling is supported (input rank {pr})";
                if (attrs.TryGetValue("kernel_shape", out var ks) && ks.Ints.Count != 2) return $"only 2D pooling is supported (kernel_shape of {ks.Ints.Count})";
                return null;
            case "Gemm":
                return Constant(1) ? null : "Gemm input B must be constant";
            case "Pow":
                return info.Type(node.Input[0]) is DT.Float && (Input(1) is null || info.Type(node.Input[1]) is null or DT.Float) ? null : "Pow needs both inputs float32";
            case "Slice":
                return Enumerable.Range(1, 4).All(i => Input(i) is null || info.IsConstant(Input(i)!)) ? null : "Slice starts/ends/axes/steps must be constant initializers";
            case "Split":
                return Input(1) is null || info.IsConstant(Input(1)!) ? null : "Split's splits must be constant";
            case "GatherND":
                return attrs.TryGetValue("batch_dims", out var bd) && bd.I != 0 ? "GatherND batch_dims must be 0" : null;
            case "DepthToSpace":
            {
                bool crd = attrs.TryGetValue("mode", out var mode) && mode.S.ToStringUtf8() == "CRD";
                return crd && (info.Shape(node.Input[0]) is not { } s || s.Any(d => d < 0)) ? "DepthToSpace mode CRD needs a fixed input shape" : null;
            }
            case "GridSample":
                if (Rank(0) is { } gr && gr != 4) return $"GridSample needs a 4D input (rank {gr})";
                string gm = attrs.TryGetValue("mode", out var gma) ? gma.S.ToStringUtf8() : "linear";
                string gp = attrs.TryGetValue("padding_mode", out var gpa) ? gpa.S.ToStringUtf8() : "zeros";
                long ac = attrs.TryGetValue("align_corners", out var aca) ? aca.I : 0;
                return gm is "linear" or "bilinear" && gp == "reflection" && ac == 0 ? "GridSample linear + reflection padding without align_corners is not supported" : null;
            case "Tile":
                return Rank(0) is { } tr && tr > 5 ? $"Tile input rank {tr} is over 5" : null;
            case "Range":
                return info.Type(node.Input[0]) is DT.Int64 ? "Range takes int32/float16/float32, not int64" : null;
            default:
                return null;
        }
    }

    /// <summary>Partition index per node (-1 for the nodes left to the CPU provider).</summary>
    internal static int[] Partition(IReadOnlyList<NodeProto> nodes, IReadOnlyList<bool> supported)
    {
        int n = nodes.Count;
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
            foreach (var o in nodes[i].Output.Where(o => o.Length > 0)) producer[o] = i;
        var preds = new List<int>[n];
        var succs = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < n; i++)
        {
            preds[i] = nodes[i].Input.Where(x => x.Length > 0 && producer.ContainsKey(x)).Select(x => producer[x]).Distinct().ToList();
            foreach (var p in preds[i]) succs[p].Add(i);
        }

        // Topological walk: drain ready supported nodes into the current group; only when none is ready, close the group
        // and run the ready unsupported nodes. A group so formed never depends on itself through a CPU node.
        var group = Enumerable.Repeat(-1, n).ToArray();
        var pending = preds.Select(p => p.Count).ToArray();
        var readySupported = new Queue<int>(Enumerable.Range(0, n).Where(i => pending[i] == 0 && supported[i]));
        var readyOther = new Queue<int>(Enumerable.Range(0, n).Where(i => pending[i] == 0 && !supported[i]));
        int current = 0, done = 0;
        bool open = false;
        void Finish(int i)
        {
            done++;
            foreach (var s in succs[i])
                if (--pending[s] == 0) (supported[s] ? readySupported : readyOther).Enqueue(s);
        }
        while (done < n)
        {
            if (readySupported.Count > 0)
            {
                int i = readySupported.Dequeue();
                group[i] = current;
                open = true;
                Finish(i);
            }
            else if (readyOther.Count > 0)
            {
                if (open) { current++; open = false; }
                Finish(readyOther.Dequeue());
            }
            else break; // a cycle: not a valid ONNX graph; leave the rest unpartitioned
        }

        // Split each group into its connected parts, numbered in graph order.
        var partition = Enumerable.Repeat(-1, n).ToArray();
        int next = 0;
        for (int i = 0; i < n; i++)
        {
            if (group[i] < 0 || partition[i] >= 0) continue;
            var stack = new Stack<int>([i]);
            partition[i] = next;
            while (stack.Count > 0)
            {
                int x = stack.Pop();
                foreach (var y in preds[x].Concat(succs[x]))
                    if (group[y] == group[i] && partition[y] < 0) { partition[y] = next; stack.Push(y); }
            }
            next++;
        }
        return partition;
    }

    /// <summary>Element types and shapes known from the graph's inputs, initializers, value_info and Constant/Cast/Shape nodes.</summary>
    internal sealed class ValueInfo
    {
        private readonly Dictionary<string, DT> _types = new(StringComparer.Ordinal);
        private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
        private readonly HashSet<string> _initializers = new(StringComparer.Ordinal);
        private readonly HashSet<string> _constants = new(StringComparer.Ordinal);

        public ValueInfo(GraphProto graph)
        {
            foreach (var t in graph.Initializer)
            {
                _types[t.Name] = (DT)t.DataType;
                _shapes[t.Name] = t.Dims.ToArray();
                _initializers.Add(t.Name);
                _constants.Add(t.Name);
            }
            foreach (var v in graph.Input.Concat(graph.ValueInfo).Concat(graph.Output))
            {
                if (v.Type?.TensorType is not { } tt || _initializers.Contains(v.Name)) continue;
                if (tt.ElemType != 0) _types[v.Name] = (DT)tt.ElemType;
                if (tt.Shape is { } shape) _shapes[v.Name] = shape.Dim.Select(d => d.HasDimValue ? d.DimValue : -1).ToArray();
            }
            // Propagate element types in graph order: enough for the dtype rule (integer index paths vs float data paths).
            foreach (var node in graph.Node)
            {
                if (node.Output.Count == 0) continue;
                DT? type = node.OpType switch
                {
                    "Constant" => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t ? (DT)t.DataType : null,
                    "Cast" => (DT)node.Attribute.First(a => a.Name == "to").I,
                    "Shape" or "Size" or "NonZero" or "ArgMax" or "ArgMin" => DT.Int64,
                    "Equal" or "Less" or "Greater" or "Not" or "And" or "Or" or "IsNaN" => DT.Bool,
                    "Where" => node.Input.Count > 1 ? Type(node.Input[1]) : null,
                    "ConstantOfShape" => node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } v ? (DT)v.DataType : DT.Float,
                    _ => node.Input.Count > 0 ? Type(node.Input[0]) : null,
                };
                if (node.OpType == "Constant")
                {
                    _constants.Add(node.Output[0]);
                    if (node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } ct) _shapes.TryAdd(node.Output[0], ct.Dims.ToArray());
                }
                foreach (var o in node.Output.Where(o => o.Length > 0))
                    if (type is { } t2) _types.TryAdd(o, t2);
            }
        }

        public DT? Type(string name) => _types.TryGetValue(name, out var t) ? t : null;

        /// <summary>The shape with -1 for symbolic dimensions, or null when unknown.</summary>
        public long[]? Shape(string name) => _shapes.TryGetValue(name, out var s) ? s : null;

        public bool IsInitializer(string name) => _initializers.Contains(name);

        public bool IsConstant(string name) => _constants.Contains(name);
    }
}
