using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>What <see cref="ActivationQuantizer.Apply"/> did: the layers that now compute in int8, and those left float with the reason.</summary>
public sealed record ActivationQuantizationResult(IReadOnlyList<string> Quantized, IReadOnlyList<(string Node, string Reason)> LeftFloat);

/// <summary>
/// Turns weight-only int8 layers into W8A8 layers ONNX Runtime runs on its integer kernels, in standard QDQ form: for a
/// Conv or MatMul whose weight is an int8 DequantizeLinear (per-tensor, or per output channel), the activation input
/// gets QuantizeLinear → DequantizeLinear (uint8, static scale from calibrated <see cref="ActivationRanges"/>). A Conv
/// also gets its bias as int32 (scale = s_x·s_w per channel) and its output quantized, the pattern ONNX Runtime fuses
/// into QLinearConv; a MatMul keeps a float output, the pattern it fuses into MatMulIntegerToFloat. Any ONNX runtime
/// runs the result; one without those fusions computes the same values in float.
/// </summary>
public static class ActivationQuantizer
{
    /// <param name="readFloat">Reads a float initializer's values (the model's, so external data resolves).</param>
    /// <param name="include">Which Conv/MatMul nodes may be quantized (all by default).</param>
    public static ActivationQuantizationResult Apply(GraphProto graph, ActivationRanges ranges, Func<TensorProto, float[]> readFloat, Func<NodeProto, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(readFloat);
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(ranges);
        var editor = new GraphEditor(graph);
        var quantized = new List<string>();
        var leftFloat = new List<(string, string)>();
        // Per tensor: its QuantizeLinear (made once, shared) and, for a Conv output now read through a DequantizeLinear, the
        // tensor that DequantizeLinear restores, so a reader of it reuses the same quantized value instead of a second Q.
        var activationQ = new Dictionary<string, Quantized>(StringComparer.Ordinal);
        var restoredFrom = new Dictionary<string, string>(StringComparer.Ordinal);

        Quantized AddQuantize(string tensor, ActivationRange range)
        {
            var (scale, zeroPoint) = range.UInt8Parameters();
            string scaleName = editor.AddInitializer(TensorData.Create<float>(editor.UniqueName(tensor + ".act_scale"), [], [scale])).Name;
            string zpName = editor.AddInitializer(TensorData.Create<byte>(editor.UniqueName(tensor + ".act_zero_point"), [], [zeroPoint])).Name;
            string q = editor.UniqueName(tensor + ".act_quantized");
            editor.AddNode("QuantizeLinear", [tensor, scaleName, zpName], [q], name: editor.UniqueName(tensor + ".QuantizeLinear"));
            return activationQ[tensor] = new Quantized(q, scaleName, zpName, scale);
        }

        string Dequantize(Quantized q, string hint) =>
            editor.AddNode("DequantizeLinear", [q.Name, q.Scale, q.ZeroPoint], [editor.UniqueName(hint)], name: editor.UniqueName(hint + ".DequantizeLinear")).Output[0];

        foreach (var node in graph.Node.Where(n => n.OpType is "Conv" or "MatMul").ToList())
        {
            string label = node.Name.Length > 0 ? node.Name : node.Output[0];
            if (include is not null && !include(node)) continue;
            if (WeightDequantize(editor, node, readFloat) is not { } weight)
            {
                if (node.Input.Count > 1 && (editor.IsInitializer(node.Input[1]) || editor.Producer(node.Input[1])?.OpType == "DequantizeLinear"))
                    leftFloat.Add((label, "weight is not int8 per-tensor or per-output-channel"));
                continue;
            }
            string x = restoredFrom.GetValueOrDefault(node.Input[0], node.Input[0]);
            activationQ.TryGetValue(x, out var input);
            ActivationRange inputRange = default;
            if (input is null && !ranges.TryGet(x, out inputRange)) { leftFloat.Add((label, $"no calibrated range for its input '{x}'")); continue; }
            bool conv = node.OpType == "Conv";
            string y = node.Output[0];
            ActivationRange outputRange = default;
            if (conv && !ranges.TryGet(y, out outputRange)) { leftFloat.Add((label, $"no calibrated range for its output '{y}'")); continue; }
            if (conv && editor.IsGraphOutput(y)) { leftFloat.Add((label, "its output is a graph output")); continue; }
            TensorProto? bias = null;
            if (conv && node.Input.Count > 2 && node.Input[2].Length > 0)
            {
                if (!editor.TryGetInitializer(node.Input[2], out var b) || b.DataType != (int)DT.Float) { leftFloat.Add((label, "bias is not a float initializer")); continue; }
                bias = b;
            }

            input ??= AddQuantize(x, inputRange);
            node.Input[0] = Dequantize(input, x + ".act_dequantized");
            if (bias is not null)
            {
                // QLinearConv adds the bias in the accumulator's units: int32 at scale s_x·s_w[c], zero point 0.
                var b = readFloat(bias);
                int channels = b.Length;
                var biasScale = new float[channels];
                var biasQ = new int[channels];
                for (int c = 0; c < channels; c++)
                {
                    biasScale[c] = input.ScaleValue * weight.Scales[weight.Scales.Length == 1 ? 0 : c];
                    biasQ[c] = (int)Math.Clamp(Math.Round(b[c] / (double)biasScale[c]), int.MinValue, int.MaxValue);
                }
                string biasName = editor.AddInitializer(TensorData.Create<int>(editor.UniqueName(bias.Name + ".int32"), [channels], biasQ)).Name;
                string biasScaleName = editor.AddInitializer(TensorData.Create<float>(editor.UniqueName(bias.Name + ".scale"), [channels], biasScale)).Name;
                var dq = editor.AddNode("DequantizeLinear", [biasName, biasScaleName], [editor.UniqueName(bias.Name + ".dequantized")],
                    [Attr.Int("axis", 0)], editor.UniqueName(bias.Name + ".DequantizeLinear"));
                node.Input[2] = dq.Output[0];
            }
            if (!conv) MoveBiasPastReshape(editor, node);
            if (conv)
            {
                // Conv → Q is what ONNX Runtime fuses into QLinearConv; the readers of y read its DequantizeLinear.
                var output = AddQuantize(y, outputRange);
                var q = editor.Producer(output.Name)!;
                string restored = Dequantize(output, y + ".act_dequantized");
                var restoredNode = editor.Producer(restored)!;
                editor.ReplaceUses(y, restored, except: [q, restoredNode]);
                restoredFrom[restored] = y;
            }
            quantized.Add(label);
        }
        editor.Reindex();
        if (!editor.IsTopologicallySorted) editor.SortTopologically();
        return new ActivationQuantizationResult(quantized, leftFloat);
    }

    /// <summary>
    /// A linear layer on flattened tokens, MatMul(x[N, K], W) → Add(bias) → Reshape back, becomes MatMul → Reshape →
    /// Add: ONNX Runtime's MatMulAddFusion (which the session option to disable it does not stop) would otherwise turn
    /// MatMul + Add on 2-D x into a Gemm before its QDQ fusions run, and it has no integer Gemm for a float bias.
    /// </summary>
    private static void MoveBiasPastReshape(GraphEditor editor, NodeProto matmul)
    {
        var readers = editor.Consumers(matmul.Output[0]);
        if (readers.Count != 1 || readers[0] is not { OpType: "Add" } add || editor.IsGraphOutput(matmul.Output[0])) return;
        int biasSlot = add.Input[0] == matmul.Output[0] ? 1 : 0;
        if (!editor.TryGetInitializer(add.Input[biasSlot], out var bias) || bias.Dims.Count != 1) return;
        var next = editor.Consumers(add.Output[0]);
        if (next.Count != 1 || next[0] is not { OpType: "Reshape" } reshape || reshape.Input[0] != add.Output[0] || editor.IsGraphOutput(add.Output[0])) return;
        string reshaped = reshape.Output[0];
        string beforeBias = editor.UniqueName(reshaped + ".before_bias");
        reshape.Input[0] = matmul.Output[0];
        reshape.Output[0] = beforeBias;
        add.Input[1 - biasSlot] = beforeBias;
        add.Output[0] = reshaped;
        editor.Reindex();
    }

    private sealed record Quantized(string Name, string Scale, string ZeroPoint, float ScaleValue);

    private sealed record WeightScales(float[] Scales);

    /// <summary>The per-tensor or per-output-channel scales of the node's int8 weight DequantizeLinear, or null when its weight is not one.</summary>
    private static WeightScales? WeightDequantize(GraphEditor editor, NodeProto node, Func<TensorProto, float[]> readFloat)
    {
        if (node.Input.Count < 2 || editor.Producer(node.Input[1]) is not { OpType: "DequantizeLinear" } dq) return null;
        if (dq.Input.Count < 2 || !editor.TryGetInitializer(dq.Input[0], out var data) || data.DataType != (int)DT.Int8) return null;
        if (!editor.TryGetInitializer(dq.Input[1], out var scaleTensor) || scaleTensor.DataType != (int)DT.Float) return null;
        if (dq.Input.Count > 2 && dq.Input[2].Length > 0)
        {
            // QLinearConv and MatMulIntegerToFloat take a weight zero point, but symmetric int8 needs none; a non-zero one is left alone.
            if (!editor.TryGetInitializer(dq.Input[2], out var zp) || readFloat(zp).Any(z => z != 0)) return null;
        }
        if (dq.Attribute.Any(a => a.Name == "block_size" && a.I > 0)) return null;
        if (editor.Consumers(dq.Output[0]).Count != 1) return null;
        var scales = readFloat(scaleTensor);
        if (scales.Length == 1) return new WeightScales(scales);
        long axis = dq.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 1;
        int rank = data.Dims.Count;
        if (axis < 0) axis += rank;
        bool perOutputChannel = node.OpType == "Conv" ? axis == 0 && scales.Length == data.Dims[0] : rank == 2 && axis == 1 && scales.Length == data.Dims[1];
        return perOutputChannel ? new WeightScales(scales) : null;
    }
}
