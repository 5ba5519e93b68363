using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Raises a model's default-domain (ai.onnx) opset so compressed weights can use newer operators (int4 and blocked
/// DequantizeLinear need 21), rewriting the nodes whose encoding changed on the way so the model computes the same:
/// <list type="bullet">
/// <item>Reduce* (all but ReduceSum, which moved at 13) take <c>axes</c> as an input from 18, no longer as an attribute;</item>
/// <item>Split without a <c>split</c> input gets <c>num_outputs</c>, which 18 requires;</item>
/// <item>GridSample's modes "bilinear"/"bicubic" are named "linear"/"cubic" from 20.</item>
/// </list>
/// Operators whose meaning changed in a way a local rewrite cannot follow (GroupNormalization at 21: scale and bias
/// become per channel; DFT at 20: axis becomes an input) are refused with <see cref="InvalidArgumentException"/>, before
/// anything is changed. Other domains (com.microsoft, ai.onnx.ml) are left as they are.
/// </summary>
public static class OpsetUpgrader
{
    /// <summary>The highest opset this upgrader knows the changes up to.</summary>
    public const int MaximumOpset = 21;

    /// <summary>The oldest opset it raises from.</summary>
    public const int MinimumSourceOpset = 13;

    private static readonly HashSet<string> ReduceOpsWithAxesInputFrom18 = new(StringComparer.Ordinal)
    {
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare",
    };

    /// <summary>The model's default-domain opset ("" or "ai.onnx" import); 0 when it imports none.</summary>
    public static int DefaultOpset(ModelProto model) =>
        (int)(model.OpsetImport.Where(IsDefaultDomain).Select(o => o.Version).DefaultIfEmpty(0).Max());

    /// <summary>
    /// Raises the default-domain opset of <paramref name="model"/> (in place) to <paramref name="targetOpset"/> when it is
    /// lower, and the IR version to the one that opset needs. Returns whether anything changed.
    /// </summary>
    public static bool Upgrade(ModelProto model, int targetOpset)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (targetOpset > MaximumOpset)
            throw new InvalidArgumentException("opset", $"{targetOpset} is beyond {MaximumOpset}, the newest opset the upgrader knows");
        int from = DefaultOpset(model);
        if (from == 0) throw new InvalidArgumentException("model", "imports no ai.onnx opset; it is not a valid ONNX model");
        if (from < MinimumSourceOpset && targetOpset > from)
            throw new InvalidArgumentException("model", $"is at opset {from}; only models at opset {MinimumSourceOpset} or later can be raised (Squeeze, Unsqueeze, Split and ReduceSum changed at 13); re-export it");
        if (from >= targetOpset) return RaiseIrVersion(model, targetOpset);

        // Everything is checked before anything changes, so a refused model is left as it was.
        var nodes = OnnxGraphs.WithSubgraphs(model.Graph)
            .SelectMany(g => g.Node.Select(n => (Graph: g, Node: n)))
            .Where(x => IsDefaultDomain(x.Node.Domain))
            .ToList();
        var problems = nodes.Select(x => Unconvertible(x.Node, from, targetOpset)).OfType<string>().Distinct().ToList();
        if (problems.Count > 0)
            throw new InvalidArgumentException("model", $"cannot raise opset {from} to {targetOpset}: {string.Join("; ", problems)}");

        RaiseIrVersion(model, targetOpset);
        var editor = new GraphEditor(model.Graph); // for names unused anywhere in the model
        foreach (var (graph, node) in nodes) Convert(graph, node, from, targetOpset, editor);
        foreach (var import in model.OpsetImport.Where(IsDefaultDomain)) import.Version = targetOpset;
        return true;
    }

    /// <summary>Raises the IR version to what <paramref name="opset"/> (and the int4 types it brings) needs; never lowers it.</summary>
    private static bool RaiseIrVersion(ModelProto model, int opset)
    {
        long needed = GraphBuilder.IrVersionFor(Math.Max(opset, GraphBuilder.MinOpset));
        if (model.IrVersion >= needed) return false;
        model.IrVersion = needed;
        return true;
    }

    private static bool IsDefaultDomain(OperatorSetIdProto import) => IsDefaultDomain(import.Domain);

    private static bool IsDefaultDomain(string domain) => string.IsNullOrEmpty(domain) || domain == "ai.onnx";

    private static bool Crosses(int from, int to, int version) => from < version && to >= version;

    private static string? Unconvertible(NodeProto node, int from, int to) => node.OpType switch
    {
        "GroupNormalization" when Crosses(from, to, 21) =>
            "GroupNormalization changes meaning at opset 21 (scale and bias become per channel); export the model at opset 21 or decompose the normalisation",
        "DFT" when Crosses(from, to, 20) => "DFT takes its axis as an input from opset 20; export the model at opset 20 or later",
        _ => null,
    };

    private static void Convert(GraphProto graph, NodeProto node, int from, int to, GraphEditor names)
    {
        if (ReduceOpsWithAxesInputFrom18.Contains(node.OpType) && Crosses(from, to, 18))
        {
            var axes = node.Attribute.FirstOrDefault(a => a.Name == "axes");
            if (axes is null) return; // no axes: reduce over all, the same at 18 (noop_with_empty_axes defaults to 0)
            node.Attribute.Remove(axes);
            var tensor = TensorData.Create<long>(names.UniqueName(NodeLabel(node) + ".axes"), [axes.Ints.Count], axes.Ints.ToArray());
            graph.Initializer.Add(tensor);
            while (node.Input.Count < 1) node.Input.Add("");
            if (node.Input.Count == 1) node.Input.Add(tensor.Name);
            else node.Input[1] = tensor.Name;
        }
        else if (node.OpType == "Split" && Crosses(from, to, 18))
        {
            bool hasSplit = node.Input.Count > 1 && node.Input[1].Length > 0;
            if (!hasSplit && !node.Attribute.Any(a => a.Name == "num_outputs"))
                node.Attribute.Add(Attr.Int("num_outputs", node.Output.Count));
        }
        else if (node.OpType == "GridSample" && Crosses(from, to, 20))
        {
            var mode = node.Attribute.FirstOrDefault(a => a.Name == "mode");
            string? renamed = mode?.S.ToStringUtf8() switch { "bilinear" => "linear", "bicubic" => "cubic", _ => null };
            if (mode is not null && renamed is not null) mode.S = Google.Protobuf.ByteString.CopyFromUtf8(renamed);
        }
    }

    private static string NodeLabel(NodeProto node) => string.IsNullOrEmpty(node.Name) ? node.OpType : node.Name;
}
