using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// ONNX Runtime's exact integer products on x86-64 CPUs without VNNI (AVX2, AVX-512 before VNNI). There its default
/// u8 × s8 kernel adds pairs of products in saturating 16-bit lanes (VPMADDUBSW): on an AVX2-only AMD EPYC
/// (2026-12-07) that cost tiny-shapes' W8A8 pictures 46 → 37 dB of PSNR against float32. With the config entry set,
/// ONNX Runtime turns int8 weights into uint8 (+128) and runs exact u8 × u8 kernels; CPUs with VNNI ignore it.
/// Its conversion writes a scalar zero point, which a per-axis DequantizeLinear without one rejects at run time, so the
/// entry is only set where every such node has its zero point (<see cref="Supports"/>).
/// </summary>
public static class PreciseInt8
{
    public const string ConfigEntry = "session.x64quantprecision";

    /// <summary>True when no per-axis DequantizeLinear of int8 data lacks its zero point (files compressed before 2026-12-07 have none).</summary>
    public static bool Supports(GraphProto graph) => !MissingZeroPoints(graph).Any();

    /// <summary>Gives every per-axis int8 DequantizeLinear without a zero point an explicit one of zeros (the same values).</summary>
    public static int AddZeroPoints(GraphProto graph)
    {
        var missing = MissingZeroPoints(graph).ToList();
        var names = new HashSet<string>(graph.Initializer.Select(i => i.Name), StringComparer.Ordinal);
        foreach (var (node, scale) in missing)
        {
            string name = node.Input[0] + ".zero_point";
            for (int i = 1; !names.Add(name); i++) name = $"{node.Input[0]}.zero_point_{i}";
            var zeros = new TensorProto { Name = name, DataType = (int)DT.Int8, RawData = ByteString.CopyFrom(new byte[TensorData.ElementCount(scale)]) };
            zeros.Dims.AddRange(scale.Dims);
            graph.Initializer.Add(zeros);
            if (node.Input.Count == 2) node.Input.Add(name);
            else node.Input[2] = name;
        }
        return missing.Count;
    }

    private static IEnumerable<(NodeProto Node, TensorProto Scale)> MissingZeroPoints(GraphProto graph)
    {
        var initializers = graph.Initializer.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.OpType != "DequantizeLinear" || node.Input.Count < 2 || (node.Input.Count > 2 && node.Input[2].Length > 0)) continue;
            if (!initializers.TryGetValue(node.Input[0], out var data) || data.DataType != (int)DT.Int8) continue;
            if (initializers.TryGetValue(node.Input[1], out var scale) && TensorData.ElementCount(scale) > 1) yield return (node, scale);
        }
    }
}
