using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>
/// The parameter count of a compressed graph once its weights are rebuilt, as if its decompression were constant-folded:
/// the element count of every value computed from initializers alone that the running graph reads (a weight
/// DequantizeLinear, a palette look-up or a pruning scatter rebuilds, or an initializer read as is) or that nothing reads,
/// and K·N for each com.microsoft MatMulNBits weight. Shapes come from the
/// graph itself: DequantizeLinear keeps its quantized input's shape, palettes and pruning end in a Reshape to the
/// weight's shape (an int64 initializer), and a small shape evaluator follows the ops <c>edgediff compress</c> writes.
/// Null when a shape on the way cannot be worked out.
/// </summary>
internal static class DecompressedParameters
{
    public static long? Count(GraphProto graph, Func<TensorProto, long[]?> readInt64)
    {
        var (constants, _) = ModelInspector.DecompressionConstants(graph);
        var constantNodes = constants.ToHashSet();
        var shapes = new Dictionary<string, long[]?>(StringComparer.Ordinal);
        var int64 = new Dictionary<string, long[]?>(StringComparer.Ordinal);
        // Values with an initializer among their sources: Constant nodes alone (a causal mask, say) are not parameters,
        // as they are not for an uncompressed model.
        var fromInitializer = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
        {
            fromInitializer.Add(t.Name);
            shapes[t.Name] = t.Dims.ToArray();
            if (t.DataType == (int)TensorProto.Types.DataType.Int64 && TensorData.ElementCount(t) <= 64) int64[t.Name] = readInt64(t);
        }
        foreach (var node in constants)
        {
            long[]? shape;
            try { shape = OutputShape(node, shapes, int64); }
            catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException or OverflowException) { shape = null; }
            foreach (var o in node.Output) shapes[o] = shape;
            if (node.Input.Any(fromInitializer.Contains)) foreach (var o in node.Output) fromInitializer.Add(o);
            if (node.OpType == "Constant" && node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { DataType: (int)TensorProto.Types.DataType.Int64 } ct)
                int64[node.Output[0]] = readInt64(ct);
        }

        // The values the running graph reads: inputs of non-constant nodes (subgraphs included) and graph outputs; and the
        // values only constant nodes (or MatMulNBits' packed inputs) read, which are steps on the way to a weight.
        var read = new HashSet<string>(StringComparer.Ordinal);
        var intermediate = constants.SelectMany(n => n.Input).Where(i => i.Length > 0).ToHashSet(StringComparer.Ordinal);
        long matMulNBits = 0;
        foreach (var node in OnnxGraphs.WithSubgraphs(graph).SelectMany(g => g.Node))
        {
            if (constantNodes.Contains(node)) continue;
            bool nbits = node.OpType == "MatMulNBits" && node.Domain == "com.microsoft";
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i].Length == 0) continue;
                if (nbits && i is >= 1 and <= 4) { intermediate.Add(node.Input[i]); continue; } // packed B, scales, zero points, g_idx: K·N below
                read.Add(node.Input[i]);
            }
            if (nbits)
            {
                long k = node.Attribute.FirstOrDefault(a => a.Name == "K")?.I ?? 0, n = node.Attribute.FirstOrDefault(a => a.Name == "N")?.I ?? 0;
                if (k <= 0 || n <= 0) return null;
                matMulNBits += k * n;
            }
        }
        foreach (var o in graph.Output) read.Add(o.Name);

        // What the graph would hold as initializers with its decompression folded: every value from initializers that the
        // running graph reads, or that nothing reads (as an uncompressed model's unused initializers still count).
        long total = matMulNBits;
        foreach (var name in shapes.Keys.Where(v => read.Contains(v) || !intermediate.Contains(v)))
        {
            if (!shapes.TryGetValue(name, out var shape) || !fromInitializer.Contains(name)) continue; // a graph input, a runtime value, a Constant
            if (shape is null) return null;
            total += shape.Aggregate(1L, (a, d) => a * d);
        }
        // Initializers of subgraphs are read as stored.
        foreach (var g in OnnxGraphs.WithSubgraphs(graph).Skip(1))
            foreach (var t in g.Initializer) total += TensorData.ElementCount(t);
        return total;
    }

    private static long[]? OutputShape(NodeProto node, Dictionary<string, long[]?> shapes, Dictionary<string, long[]?> int64)
    {
        long[]? In(int i) => i < node.Input.Count && node.Input[i].Length > 0 && shapes.TryGetValue(node.Input[i], out var s) ? s : null;
        long[]? Values(int i) => i < node.Input.Count && int64.TryGetValue(node.Input[i], out var v) ? v : null;
        long Int(string name, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == name)?.I ?? fallback;
        switch (node.OpType)
        {
            case "Constant":
                return node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t ? t.Dims.ToArray() : null;
            case "Identity" or "Cast" or "DequantizeLinear" or "CumSum" or "Neg" or "Abs" or "Sign" or "Not" or "ScatterElements" or "ScatterND":
                return In(0);
            case "Add" or "Sub" or "Mul" or "Div" or "Pow" or "BitShift" or "BitwiseAnd" or "BitwiseOr" or "BitwiseXor" or "Where"
                or "Equal" or "Less" or "Greater" or "And" or "Or":
            {
                long[]? result = [];
                for (int i = 0; i < node.Input.Count && result is not null; i++) result = Broadcast(result, In(i));
                return result;
            }
            case "Reshape":
            {
                var input = In(0);
                var target = Values(1);
                if (input is null || target is null) return null;
                var shape = (long[])target.Clone();
                for (int i = 0; i < shape.Length; i++) if (shape[i] == 0 && Int("allowzero", 0) == 0) shape[i] = input[i];
                int infer = Array.IndexOf(shape, -1L);
                if (infer >= 0)
                {
                    long known = shape.Where((d, i) => i != infer).Aggregate(1L, (a, d) => a * d);
                    shape[infer] = known == 0 ? 0 : input.Aggregate(1L, (a, d) => a * d) / known;
                }
                return shape;
            }
            case "Transpose":
            {
                var input = In(0);
                if (input is null) return null;
                var perm = node.Attribute.FirstOrDefault(a => a.Name == "perm")?.Ints.ToArray() ?? Enumerable.Range(0, input.Length).Reverse().Select(i => (long)i).ToArray();
                return perm.Select(p => input[p]).ToArray();
            }
            case "Gather":
            {
                var data = In(0);
                var indices = In(1);
                if (data is null || indices is null) return null;
                int axis = (int)Int("axis", 0);
                if (axis < 0) axis += data.Length;
                return [.. data[..axis], .. indices, .. data[(axis + 1)..]];
            }
            case "Concat":
            {
                var first = In(0);
                if (first is null) return null;
                int axis = (int)Int("axis", 0);
                if (axis < 0) axis += first.Length;
                var shape = (long[])first.Clone();
                for (int i = 1; i < node.Input.Count; i++) shape[axis] += In(i)?[axis] ?? throw new InvalidOperationException();
                return shape;
            }
            case "Slice":
            {
                var input = In(0);
                var starts = Values(1);
                var ends = Values(2);
                if (input is null || starts is null || ends is null) return null;
                var axes = node.Input.Count > 3 && node.Input[3].Length > 0 ? Values(3) : Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
                var steps = node.Input.Count > 4 && node.Input[4].Length > 0 ? Values(4) : Enumerable.Repeat(1L, starts.Length).ToArray();
                if (axes is null || steps is null) return null;
                var shape = (long[])input.Clone();
                for (int i = 0; i < starts.Length; i++)
                {
                    int axis = (int)(axes[i] < 0 ? axes[i] + input.Length : axes[i]);
                    long dim = input[axis], step = steps[i];
                    if (step <= 0) return null; // not written by compress
                    long start = Math.Clamp(starts[i] < 0 ? starts[i] + dim : starts[i], 0, dim);
                    long end = Math.Clamp(ends[i] < 0 ? ends[i] + dim : ends[i], 0, dim);
                    shape[axis] = Math.Max(0, (end - start + step - 1) / step);
                }
                return shape;
            }
            case "Unsqueeze":
            {
                var input = In(0);
                var axes = Values(1) ?? node.Attribute.FirstOrDefault(a => a.Name == "axes")?.Ints.ToArray();
                if (input is null || axes is null) return null;
                var shape = input.ToList();
                int rank = input.Length + axes.Length;
                foreach (long a in axes.Select(a => a < 0 ? a + rank : a).Order()) shape.Insert((int)a, 1);
                return [.. shape];
            }
            default:
                return null;
        }
    }

    /// <summary>Numpy-style broadcast of two shapes; null when either is unknown.</summary>
    private static long[]? Broadcast(long[]? a, long[]? b)
    {
        if (a is null || b is null) return null;
        int rank = Math.Max(a.Length, b.Length);
        var result = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            long x = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            long y = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            result[i] = x == 1 ? y : y == 1 || y == x ? x : throw new InvalidOperationException($"shapes {x} and {y} do not broadcast");
        }
        return result;
    }
}
