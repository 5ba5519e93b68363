using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// Lean attention: rewrites each unmasked scaled dot-product attention spelled out in standard ONNX — heads split by
/// Reshape → Transpose, MatMul(q, kᵀ), × scale, Softmax, MatMul(·, v), heads joined by Transpose → Reshape, as our
/// builders and torch.onnx exports write it — into one <c>com.microsoft.MultiHeadAttention</c> node over the [B, S, D]
/// q, k and v. ONNX Runtime's CPU kernel for it runs flash attention (tiles in L2, online softmax), so the
/// [B·heads, S, S] score matrices (≈2.2 GiB at SD's 64×64 latents) are never held. Masked attention (the CLIP text
/// encoder's causal mask) is left alone.
/// </summary>
public static class AttentionFusion
{
    public const string Domain = "com.microsoft";

    /// <summary>Rewrites every matching attention in <paramref name="model"/>; returns how many were fused.</summary>
    public static int Fuse(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph;
        var editor = new GraphEditor(graph);
        var fused = new List<(NodeProto Attention, string Output)>();
        foreach (var softmax in graph.Node.Where(n => n.OpType == "Softmax").ToList())
            if (Match(editor, softmax) is { } m)
            {
                var node = new NodeProto { OpType = "MultiHeadAttention", Domain = Domain, Name = editor.UniqueName(softmax.Name + ".MultiHeadAttention") };
                node.Input.AddRange([m.Q, m.K, m.V]);
                node.Attribute.Add(Attr.Int("num_heads", m.Heads));
                node.Attribute.Add(Attr.Float("scale", m.Scale));
                fused.Add((node, m.Output));
            }
        if (fused.Count == 0) return 0;
        foreach (var (attention, output) in fused)
        {
            // The joined-heads Reshape's output is the attention's result: its producer goes, the fused node makes it.
            var join = editor.Producer(output)!;
            editor.RemoveNodes([join]);
            attention.Output.Add(output);
            editor.AddNode(attention);
        }
        editor.RemoveDeadNodes();
        if (!model.OpsetImport.Any(o => o.Domain == Domain)) model.OpsetImport.Add(new OperatorSetIdProto { Domain = Domain, Version = 1 });
        return fused.Count;
    }

    private sealed record Found(string Q, string K, string V, long Heads, float Scale, string Output);

    private static Found? Match(GraphEditor editor, NodeProto softmax)
    {
        long axis = softmax.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? -1;
        if (axis is not (-1 or 3)) return null;
        // Softmax ← Mul/Div by a constant scalar ← MatMul(q_heads, k_heads_transposed).
        float scale = 1f;
        var scores = editor.Producer(softmax.Input[0]);
        if (scores is { OpType: "Mul" or "Div" } scaling)
        {
            if (ScalarConstant(editor, scaling.Input[1]) is not { } c || c == 0) return null;
            scale = scaling.OpType == "Mul" ? c : 1f / c;
            if (editor.Consumers(scaling.Output[0]).Count != 1) return null;
            scores = editor.Producer(scaling.Input[0]);
        }
        if (scores is not { OpType: "MatMul" } qk || editor.Consumers(qk.Output[0]).Count != 1) return null;
        var softmaxReaders = editor.Consumers(softmax.Output[0]);
        if (softmaxReaders.Count != 1 || softmaxReaders[0] is not { OpType: "MatMul" } av || av.Input[0] != softmax.Output[0]) return null;
        // MatMul(probs, v_heads) → Transpose [0, 2, 1, 3] → Reshape to [B, S, D].
        var avReaders = editor.Consumers(av.Output[0]);
        if (avReaders.Count != 1 || avReaders[0] is not { OpType: "Transpose" } joinT || !Perm(joinT, 0, 2, 1, 3)) return null;
        var tReaders = editor.Consumers(joinT.Output[0]);
        if (tReaders.Count != 1 || tReaders[0] is not { OpType: "Reshape" } join || editor.IsGraphOutput(joinT.Output[0])) return null;

        if (SplitHeads(editor, qk.Input[0], keyTransposed: false) is not { } q) return null;
        if (SplitHeads(editor, qk.Input[1], keyTransposed: true) is not { } k) return null;
        if (SplitHeads(editor, av.Input[1], keyTransposed: false) is not { } v) return null;
        if (q.Heads != k.Heads || q.Heads != v.Heads) return null;
        return new Found(q.Input, k.Input, v.Input, q.Heads, scale, join.Output[0]);
    }

    /// <summary>
    /// The [B, S, D] tensor split into heads by Reshape([B, S, heads, d]) → Transpose [0, 2, 1, 3] (a key: then
    /// Transpose [0, 1, 3, 2], or the single Transpose [0, 2, 3, 1]), and the head count read from the Reshape's shape.
    /// </summary>
    private static (string Input, long Heads)? SplitHeads(GraphEditor editor, string value, bool keyTransposed)
    {
        var t = editor.Producer(value);
        if (t is not { OpType: "Transpose" }) return null;
        if (keyTransposed)
        {
            if (Perm(t, 0, 1, 3, 2))
            {
                t = editor.Producer(t.Input[0]);
                if (t is not { OpType: "Transpose" } || !Perm(t, 0, 2, 1, 3)) return null;
            }
            else if (!Perm(t, 0, 2, 3, 1)) return null;
        }
        else if (!Perm(t, 0, 2, 1, 3)) return null;
        var reshape = editor.Producer(t.Input[0]);
        if (reshape is not { OpType: "Reshape" } || reshape.Input.Count < 2) return null;
        if (ShapeDims(editor, reshape.Input[1]) is not { Length: 4 } dims || dims[2] <= 0) return null; // the head size may be computed (d // heads)
        return (reshape.Input[0], dims[2]);
    }

    private static bool Perm(NodeProto transpose, params long[] perm) =>
        transpose.Attribute.FirstOrDefault(a => a.Name == "perm") is { } p && p.Ints.SequenceEqual(perm);

    /// <summary>A Reshape's target shape where its last entries are constants: an int64 initializer or Constant, or a Concat of pieces (unknown ones as −1).</summary>
    private static long[]? ShapeDims(GraphEditor editor, string value)
    {
        if (Int64Constant(editor, value) is { } whole) return whole;
        if (editor.Producer(value) is not { OpType: "Concat" } concat) return null;
        var dims = new List<long>();
        foreach (var piece in concat.Input)
        {
            if (Int64Constant(editor, piece) is { } known) dims.AddRange(known);
            else dims.Add(-1); // a runtime size (batch, sequence), one entry per piece as exporters write them
        }
        return [.. dims];
    }

    private static long[]? Int64Constant(GraphEditor editor, string value)
    {
        TensorProto? tensor = editor.FindInitializer(value);
        var producer = editor.Producer(value);
        if (tensor is null && producer is { OpType: "Constant" } constant) tensor = constant.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
        if (tensor is null && producer is { OpType: "Unsqueeze" } unsqueeze) return Int64Constant(editor, unsqueeze.Input[0]);
        if (tensor is null || tensor.DataType != (int)DT.Int64) return null;
        return TensorData.Read<long>(tensor);
    }

    private static float? ScalarConstant(GraphEditor editor, string value)
    {
        TensorProto? tensor = editor.FindInitializer(value);
        if (tensor is null && editor.Producer(value) is { OpType: "Constant" } constant) tensor = constant.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
        if (tensor is null || tensor.DataType != (int)DT.Float) return null;
        var values = TensorData.ReadAsFloat(tensor);
        return values.Length == 1 ? values[0] : null;
    }
}
