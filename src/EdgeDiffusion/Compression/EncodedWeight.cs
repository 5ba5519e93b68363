using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>
/// One weight in compressed form: the initializers that store it and the standard-ONNX nodes that rebuild the original
/// float tensor. Exactly one node outputs <see cref="OutputName"/> (the original initializer's name), so the graph's
/// readers stay as they are (see <see cref="GraphEditor.ReplaceInitializer"/>). <see cref="Reconstructed"/> is what those
/// nodes compute, done in C#: the reference the graph is tested against and the weights the report's SNR is taken on.
/// </summary>
public sealed class EncodedWeight
{
    public required string OutputName { get; init; }
    public required IReadOnlyList<TensorProto> Initializers { get; init; }
    public required IReadOnlyList<NodeProto> Nodes { get; init; }

    /// <summary>The decompressed weight in the original shape and layout, row-major float32.</summary>
    public required float[] Reconstructed { get; init; }

    /// <summary>Short method name for reports: "linear", "palettize", "prune", "prune+palettize"…</summary>
    public required string Method { get; init; }

    /// <summary>Nominal bits per stored value (8 for int8, 6 for a 6-bit palette; for pruning, those of the kept values).</summary>
    public required double Bits { get; init; }

    /// <summary>Human detail for reports, e.g. "int4 sym block 32 axis 0" or "6-bit, group 16, per-channel scale".</summary>
    public string Detail { get; init; } = "";

    /// <summary>The default-domain opset the nodes need (13 for per-channel int8, 18 for bitwise unpacking, 21 for int4 or blocks).</summary>
    public required int MinimumOpset { get; init; }

    /// <summary>Bytes the initializers take (raw data as stored).</summary>
    public long StoredBytes => Initializers.Sum(t => TensorData.RawByteCount(t));
}

/// <summary>
/// Turns one float weight into an <see cref="EncodedWeight"/>. Implementations are pure (no graph or file access) and
/// deterministic for the same input and options, so a model compresses the same way every time and weights can be
/// encoded in parallel. New value names must start with <c>use.Name</c> + "." (or come from <paramref name="uniqueName"/>)
/// so they cannot clash with the graph's.
/// </summary>
public interface IWeightEncoder
{
    /// <summary>Short description for reports and errors, e.g. "palettize 6-bit per-grouped-channel g16".</summary>
    string Description { get; }

    /// <summary>Null when <paramref name="use"/> can be encoded, else why not (one line), e.g. "block size 32 does not divide K = 40".</summary>
    string? CannotEncode(WeightUse use);

    /// <summary>Encodes <paramref name="weights"/> (row-major, <c>use.Shape</c>).</summary>
    /// <param name="uniqueName">Returns a graph-wide unused name starting with the given hint.</param>
    EncodedWeight Encode(WeightUse use, ReadOnlySpan<float> weights, Func<string, string> uniqueName);
}
