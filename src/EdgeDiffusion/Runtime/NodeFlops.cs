using System.Globalization;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// Floating-point (or integer) operations of one profiled kernel, from the input and output shapes ONNX Runtime recorded:
/// 2 per multiply-add of the matrix-product and convolution families, which hold nearly all of a diffusion model's work.
/// Other kernels (element-wise, normalization, softmax, data movement) count 0, so totals are a slight undercount. Shapes are
/// those of the kernels as ONNX Runtime ran them: its NCHWc convolutions pad channels to blocks of 8 or 16, so a layer with
/// an odd channel count (an RGB output) counts the padded lanes it really computes.
/// </summary>
public static class NodeFlops
{
    /// <summary>Operations of <paramref name="node"/>; 0 for kernels outside the counted families or with shapes missing.</summary>
    public static double Of(NodeEvent node)
    {
        ArgumentNullException.ThrowIfNull(node);
        var inputs = node.InputShapes.Select(Dims).ToList();
        var outputs = node.OutputShapes.Select(Dims).ToList();
        long[]? In(int i) => i < inputs.Count ? inputs[i] : null;
        long[]? output = outputs.Count > 0 ? outputs[0] : null;
        if (output is null || output.Length == 0) return 0;
        return node.OpType switch
        {
            // Weight [Cout, Cin/group, k…]: every output element takes Cin/group × k… multiply-adds.
            "Conv" or "FusedConv" or "NchwcConv" or "ConvInteger" => Convolution(output, In(1)),
            "QLinearConv" => Convolution(output, In(3)),
            // Weight [Cin, Cout/group, k…]: every input element spreads over Cout/group × k… outputs.
            "ConvTranspose" => In(0) is { Length: > 1 } x && In(1) is { Length: > 1 } w ? 2.0 * Product(x) / x[1] * Product(w) : 0,
            "MatMul" or "FusedMatMul" or "MatMulInteger" or "DynamicQuantizeMatMul" or "MatMulIntegerToFloat" => MatrixProduct(output, In(0)),
            "QLinearMatMul" => MatrixProduct(output, In(0)),
            // A [..., K] against a packed [N, K] weight: the output is [..., N].
            "MatMulNBits" or "MatMulBnb4" => In(0) is { Length: > 0 } a ? 2.0 * Product(output) * a[^1] : 0,
            "Gemm" or "QGemm" => MatrixProduct(output, In(0)),
            _ => 0,
        };
    }

    /// <summary>Sum over the kernels of one run (the first by default).</summary>
    public static double Total(ProfileTrace trace, int run = 0) =>
        trace.Nodes.Where(n => n.Run == run).Sum(Of);

    private static double Convolution(long[] output, long[]? weight) =>
        weight is { Length: > 1 } w && output.Length > 1 && w[0] > 0 ? 2.0 * Product(output) / output[1] * Product(w) : 0;

    /// <summary>Output [..., M, N] and A [..., M, K] (or transposed, [..., K, M]): 2·|output|·K.</summary>
    private static double MatrixProduct(long[] output, long[]? a)
    {
        if (a is not { Length: > 0 }) return 0;
        long m = output.Length > 1 ? output[^2] : 1;
        long k = a.Length > 1 && a[^2] != m && a[^1] == m ? a[^2] : a[^1];
        return 2.0 * Product(output) * k;
    }

    private static double Product(long[] dims) => dims.Aggregate(1.0, (p, d) => p * d);

    /// <summary>"float[2,4,64,64]" → [2, 4, 64, 64]; an unreadable shape → empty.</summary>
    internal static long[] Dims(string shape)
    {
        int open = shape.IndexOf('[', StringComparison.Ordinal);
        int close = shape.LastIndexOf(']');
        if (open < 0 || close <= open) return [];
        var parts = shape[(open + 1)..close].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var dims = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out dims[i]) || dims[i] < 0) return [];
        return dims;
    }
}
