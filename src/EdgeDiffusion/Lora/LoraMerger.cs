using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Lora;

/// <summary>What merging LoRAs into one component did.</summary>
public sealed record LoraMergeReport(string Component, int Applied, IReadOnlyList<string> Unmatched, IReadOnlyList<string> AppliedKeys);

/// <summary>
/// Merges LoRA updates into an ONNX model's float32 weights: W += m · (alpha / rank) · up @ down. A LoRA key is matched to
/// the graph through the model's own weight names: the module path of each MatMul / Gemm / Conv weight, read from its
/// initializer name (<c>down_blocks.0.….to_q.weight</c>) or, where the exporter anonymised it (<c>onnx::MatMul_217</c>),
/// from the node's scope (<c>/layers.0/attn/q/MatMul</c> → <c>layers.0.attn.q</c>), written with '_' for '.' as kohya does.
/// The stored layout is read from the node: MatMul weights are [in, out] (the transpose of PyTorch's), Gemm follows its
/// transB, Conv is [out, in, kh, kw].
/// </summary>
public static class LoraMerger
{
    private enum Layout { InOut, OutIn, Conv }

    private sealed record Target(string Initializer, Layout Layout, string Module, bool Compressed);

    /// <summary>The graph's LoRA-addressable weights by normalized module path.</summary>
    public static IReadOnlyDictionary<string, string> TargetsOf(GraphProto graph) =>
        FindTargets(graph).ToDictionary(p => p.Key, p => p.Value.Initializer);

    private static Dictionary<string, Target> FindTargets(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            foreach (var output in node.Output) producer[output] = node;
        var targets = new Dictionary<string, Target>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.OpType is not ("MatMul" or "Gemm" or "Conv") || node.Input.Count < 2) continue;
            string weight = node.Input[1];
            Layout layout = node.OpType switch
            {
                "Conv" => Layout.Conv,
                "Gemm" => node.Attribute.Any(a => a.Name == "transB" && a.I == 1) ? Layout.OutIn : Layout.InOut,
                _ => Layout.InOut,
            };
            bool compressed = false;
            if (!initializers.ContainsKey(weight) && producer.TryGetValue(weight, out var p))
            {
                if (p.OpType == "Transpose" && initializers.ContainsKey(p.Input[0]) && layout == Layout.InOut)
                {
                    weight = p.Input[0];
                    layout = Layout.OutIn;
                }
                else compressed = true; // DequantizeLinear, a palette Gather…: the float weight only exists at run time
            }
            else if (!initializers.ContainsKey(weight)) continue; // a graph input or an activation (attention's own MatMuls)
            string? module = ModulePath(weight, node.Name);
            if (module is null) continue;
            targets.TryAdd(module.Replace('.', '_'), new Target(weight, layout, module, compressed));
        }
        return targets;
    }

    /// <summary>The PyTorch module path of a weight: from "x.y.weight", else from the node's scope "/x/y.0/y.0.z/MatMul".</summary>
    internal static string? ModulePath(string initializer, string nodeName)
    {
        if (initializer.EndsWith(".weight", StringComparison.Ordinal) && !initializer.StartsWith("onnx::", StringComparison.Ordinal))
            return initializer[..^".weight".Length];
        var segments = nodeName.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Length < 2) return null;
        var path = new List<string>();
        foreach (var segment in segments[..^1])
        {
            // The exporter names a container's child "parent.0" inside scope "parent": replace rather than append.
            if (path.Count > 0 && segment.StartsWith(path[^1] + ".", StringComparison.Ordinal)) path[^1] = segment;
            else path.Add(segment);
        }
        return string.Join('.', path);
    }

    /// <summary>
    /// Adds every layer of <paramref name="adapters"/> that targets <paramref name="component"/> into <paramref name="model"/>'s
    /// weights (in memory). Unmatched keys are reported; a key whose weight is compressed, or whose shapes disagree with the
    /// weight, is a typed error naming the LoRA file and the fix.
    /// </summary>
    public static LoraMergeReport Merge(OnnxModel model, string component, IReadOnlyList<LoraAdapter> adapters)
    {
        var targets = FindTargets(model.Graph);
        var initializers = model.Graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var unmatched = new List<string>();
        var applied = new List<string>();
        var updated = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var adapter in adapters)
            foreach (var layer in adapter.Layers.Where(l => l.Component == component))
            {
                if (!targets.TryGetValue(layer.Target, out var target))
                {
                    unmatched.Add(layer.Key);
                    continue;
                }
                if (target.Compressed)
                    throw new InvalidArgumentException("--lora", $"{adapter.Path}: {layer.Key} targets {target.Module} in {model.File}, whose weight is compressed; " +
                        "merge LoRAs before compressing (edgediff compress SOURCE -o OUT --lora FILE …) and use the float32 source for --lora");
                var tensor = initializers[target.Initializer];
                if (tensor.DataType != (int)DT.Float)
                    throw new InvalidArgumentException("--lora", $"{adapter.Path}: {layer.Key} targets {target.Initializer}, stored as {(DT)tensor.DataType}; only float32 weights can take a LoRA (convert the model to float32 first)");
                var values = updated.TryGetValue(target.Initializer, out var v) ? v : model.ReadAsFloat(tensor);
                AddDelta(adapter, layer, target, tensor.Dims.ToArray(), values, model.File);
                updated[target.Initializer] = values;
                applied.Add(layer.Key);
            }
        foreach (var (name, values) in updated)
        {
            var tensor = initializers[name];
            tensor.ClearDataLocation();
            tensor.ExternalData.Clear();
            tensor.FloatData.Clear();
            tensor.RawData = Google.Protobuf.ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        return new LoraMergeReport(component, applied.Count, unmatched, applied);
    }

    private static void AddDelta(LoraAdapter adapter, LoraLayer layer, Target target, long[] dims, float[] weight, string modelFile)
    {
        int rank = layer.Rank;
        long outFeatures = layer.UpShape[0];
        long inner = layer.Down.Length / rank; // in (linear) or in·kh·kw (conv)
        bool shapesFit = target.Layout switch
        {
            Layout.Conv => dims.Length == 4 && dims[0] == outFeatures && dims[1] * dims[2] * dims[3] == inner && (layer.DownShape.Length == 2 || layer.DownShape[1] == dims[1]),
            Layout.OutIn => dims.Length == 2 && dims[0] == outFeatures && dims[1] == inner,
            _ => dims.Length == 2 && dims[1] == outFeatures && dims[0] == inner,
        };
        if (!shapesFit)
            throw new InvalidArgumentException("--lora", $"{adapter.Path}: {layer.Key} is a [{outFeatures} × {inner}] update but {target.Module} in {modelFile} is [{string.Join(" × ", dims)}]; " +
                "the LoRA was made for another architecture (use one trained for this model)");
        float scale = adapter.Multiplier * layer.Scale;
        var up = layer.Up;
        var down = layer.Down;
        // Rows of the stored weight are contiguous: each gets rank vectorized multiply-adds, rows in parallel.
        if (target.Layout == Layout.InOut)
        {
            // W[i, :] += Σ_r down[r, i] · (scale · up[:, r]), with up's columns made rows first.
            var upColumns = new float[rank * outFeatures];
            for (long o = 0; o < outFeatures; o++)
                for (int r = 0; r < rank; r++) upColumns[r * outFeatures + o] = scale * up[o * rank + r];
            Parallel.For(0L, inner, i =>
            {
                var row = weight.AsSpan((int)(i * outFeatures), (int)outFeatures);
                for (int r = 0; r < rank; r++)
                {
                    float d = down[r * inner + i];
                    if (d != 0) TensorPrimitives.MultiplyAdd(upColumns.AsSpan((int)(r * outFeatures), (int)outFeatures), d, row, row);
                }
            });
        }
        else
        {
            // W[o, :] += Σ_r (scale · up[o, r]) · down[r, :]
            Parallel.For(0L, outFeatures, o =>
            {
                var row = weight.AsSpan((int)(o * inner), (int)inner);
                for (int r = 0; r < rank; r++)
                {
                    float u = scale * up[o * rank + r];
                    if (u != 0) TensorPrimitives.MultiplyAdd(down.AsSpan((int)(r * inner), (int)inner), u, row, row);
                }
            });
        }
    }
}
