namespace EdgeDiffusion.Compression;

/// <summary>One node input that reads a weight initializer.</summary>
/// <param name="NodeName">The reading node's name (may be empty in the source model).</param>
/// <param name="OpType">Its op type, e.g. "Conv", "MatMul", "Gemm".</param>
/// <param name="InputIndex">Which input slot reads the weight (1 = Conv W / MatMul B / Gemm B).</param>
/// <param name="TransB">For Gemm: the transB attribute (1 when the weight is stored [out, in]).</param>
public sealed record WeightConsumer(string NodeName, string OpType, int InputIndex, bool TransB = false);

/// <summary>
/// A float weight initializer chosen for compression and how the graph reads it. Encoders use the consumers to pick a
/// layout (Conv W [O, I, kh, kw] has output channels on axis 0, MatMul B [K, N] on axis 1). A tensor encoded on its own
/// (e.g. the kept values of a pruned weight) has no consumers and a 1-D shape.
/// </summary>
public sealed record WeightUse(string Name, IReadOnlyList<long> Shape, IReadOnlyList<WeightConsumer> Consumers)
{
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>The op type every consumer shares, or null when consumers differ or there are none.</summary>
    public string? OpType => Consumers.Count > 0 && Consumers.All(c => c.OpType == Consumers[0].OpType) ? Consumers[0].OpType : null;

    /// <summary>The axis holding output channels: 1 for a MatMul B [K, N] (and Gemm with transB = 0), else 0.</summary>
    public int OutputChannelAxis => OpType switch
    {
        "MatMul" when Shape.Count == 2 => 1,
        "Gemm" when Shape.Count == 2 && !Consumers.Any(c => c.TransB) => 1,
        _ => 0,
    };

    /// <summary>A stand-alone 1-D tensor (no consumers), as encoders of parts of a weight use.</summary>
    public static WeightUse Standalone(string name, long count) => new(name, [count], []);
}
