using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// The int8 decompression mode: a compressed model whose metadata carries calibrated <see cref="ActivationRanges"/>
/// (written by <c>compress</c>, which calibrates by default) runs on ONNX Runtime's integer kernels whatever form its
/// weights are stored in. At session creation every Conv / MatMul weight that a decompression subgraph computes (palette
/// look-ups, int4 blocks, pruned scatters) is evaluated a few weights at a time and re-quantized to int8 per output
/// channel, so no float32 copy of the model is ever held; then the activations get their QDQ
/// (<see cref="ActivationQuantizer"/>). Resident weights are then int8 (≈ 0.25× float32) and the step int8-fast.
/// The folder is not changed.
/// </summary>
internal static class Int8Serving
{
    private const int WeightsPerBatch = 24;

    private static readonly CompressionSpec Int8PerChannel = new()
    {
        Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8, Symmetric = true, Granularity = QuantizationGranularity.PerChannel,
    };

    /// <summary>True when the model's metadata holds activation ranges and its graph is not W8A8 already.</summary>
    public static bool Applies(GraphProto outline, IReadOnlyDictionary<string, string> metadata) =>
        metadata.ContainsKey(ActivationRanges.MetadataKey) && !outline.Node.Any(n => n.OpType == "QuantizeLinear");

    /// <summary>The rewritten model (external weights still read from the model's folder), or null when it does not apply.</summary>
    public static ModelProto? TryCreate(string modelPath, int threads)
    {
        using var model = OnnxModel.Load(modelPath);
        if (!Applies(model.Graph, model.Proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value))) return null;
        var ranges = ActivationRanges.ReadFrom(model.Proto, modelPath)!;
        var graph = model.Graph;
        var editor = new GraphEditor(graph);
        var (constantNodes, decompressed) = ModelInspector.DecompressionConstants(graph);

        // Weights of Conv / MatMul (input 1) computed by a decompression subgraph, except what is int8 per-channel already.
        var weights = new List<(NodeProto Layer, string Value)>();
        foreach (var node in graph.Node)
        {
            if (!(node.OpType is "Conv" or "MatMul" || IsLinearGemm(node)) || node.Input.Count < 2) continue;
            string w = node.Input[1];
            if (!decompressed.TryGetValue(w, out bool d) || !d || editor.IsInitializer(w)) continue;
            if (editor.Producer(w) is { OpType: "DequantizeLinear" } dq && editor.TryGetInitializer(dq.Input[0], out var data)
                && data.DataType == (int)DT.Int8 && !dq.Attribute.Any(a => a.Name == "block_size")) continue;
            if (editor.Consumers(w).Count != 1) continue;
            weights.Add((node, w));
        }

        var encoder = new LinearWeightEncoder(Int8PerChannel);
        using var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var run = new RunOptions();
        for (int start = 0; start < weights.Count; start += WeightsPerBatch)
        {
            var batch = weights.Skip(start).Take(WeightsPerBatch).ToList();
            var (side, _) = WeightExpansion.DecompressionModel(model, constantNodes, [.. batch.Select(b => b.Value)]);
            using var session = new InferenceSession(side.ToByteArray(), options);
            using var outputs = session.Run(run, [], [], [.. batch.Select(b => b.Value)]);
            for (int i = 0; i < batch.Count; i++)
            {
                var (layer, value) = batch[i];
                var shape = outputs[i].GetTensorTypeAndShape().Shape;
                ReadOnlySpan<float> values = outputs[i].GetTensorDataAsSpan<float>();
                bool gemm = layer.OpType == "Gemm";
                if (gemm)
                {
                    // Gemm(A, W[N, K]ᵀ) + C becomes MatMul(A, Wᵀ[K, N]) + C, the form ONNX Runtime's integer MatMul kernels take.
                    values = ModelCompressor.Transpose2D(values.ToArray(), (int)shape[0], (int)shape[1]);
                    shape = [shape[1], shape[0]];
                }
                var use = new WeightUse(value, shape, [new WeightConsumer(layer.Name, "MatMul", 1)]);
                if (encoder.CannotEncode(use) is not null) continue;
                var encoded = encoder.Encode(use, values, editor.UniqueName);
                foreach (var t in encoded.Initializers) editor.AddInitializer(t);
                // The int8 DequantizeLinear takes over the layer's weight input under a fresh name; the old subgraph dies.
                string int8Weight = editor.UniqueName(value + ".int8");
                var dq = encoded.Nodes[0];
                dq.Output[0] = int8Weight;
                editor.AddNode(dq);
                layer.Input[1] = int8Weight;
                if (gemm) AsMatMul(editor, layer);
            }
        }
        editor.Reindex();
        if (!editor.IsTopologicallySorted) editor.SortTopologically();
        editor.RemoveDeadNodes();
        ActivationQuantizer.Apply(graph, ranges, model.ReadAsFloat);
        PreciseInt8.AddZeroPoints(graph);
        int opset = Math.Max(13, OpsetUpgrader.DefaultOpset(model.Proto));
        if (OpsetUpgrader.Upgrade(model.Proto, opset)) editor.Reindex();
        return model.Proto;
    }

    /// <summary>Gemm(A, W, C?) with transB = 1 and neutral alpha, beta, transA: a linear layer.</summary>
    private static bool IsLinearGemm(NodeProto node) =>
        node.OpType == "Gemm" && node.Attribute.Any(a => a.Name == "transB" && a.I == 1)
        && node.Attribute.All(a => a.Name switch { "transB" => true, "transA" => a.I == 0, "alpha" or "beta" => a.F == 1f, _ => false });

    /// <summary>Turns the Gemm (whose weight input now reads [K, N]) into MatMul, with its bias as an Add after it.</summary>
    private static void AsMatMul(GraphEditor editor, NodeProto gemm)
    {
        gemm.OpType = "MatMul";
        gemm.Attribute.Clear();
        if (gemm.Input.Count < 3) return;
        string bias = gemm.Input[2];
        while (gemm.Input.Count > 2) gemm.Input.RemoveAt(2);
        if (bias.Length == 0) return;
        string output = gemm.Output[0];
        string product = editor.UniqueName(output + ".matmul");
        gemm.Output[0] = product;
        var add = new NodeProto { OpType = "Add", Name = editor.UniqueName(gemm.Name + ".bias") };
        add.Input.Add(product);
        add.Input.Add(bias);
        add.Output.Add(output);
        editor.Graph.Node.Add(add);
    }
}
