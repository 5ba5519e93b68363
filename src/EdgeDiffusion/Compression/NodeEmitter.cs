using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Collects the nodes and initializers of one encoded weight without touching a graph: every name (values, nodes,
/// initializers) comes from the caller's uniqueName with the weight's name as prefix, as <see cref="IWeightEncoder"/> asks.
/// </summary>
internal sealed class NodeEmitter(string prefix, Func<string, string> uniqueName)
{
    public List<NodeProto> Nodes { get; } = [];
    public List<TensorProto> Initializers { get; } = [];

    public string Name(string tag) => uniqueName($"{prefix}.{tag}");

    /// <summary>Adds <paramref name="tensor"/> as an initializer under a fresh name and returns the name.</summary>
    public string Initializer(string tag, TensorProto tensor)
    {
        tensor.Name = Name(tag);
        Initializers.Add(tensor);
        return tensor.Name;
    }

    public string Int64s(string tag, params long[] values) => Initializer(tag, TensorData.Create<long>("", [values.Length], values));

    public string UInt8s(string tag, params byte[] values) => Initializer(tag, TensorData.Create<byte>("", [values.Length], values));

    /// <summary>Adds one default-domain node; its output is <paramref name="output"/> when given, else a fresh name.</summary>
    public string Op(string opType, IReadOnlyList<string> inputs, string tag, string? output = null, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = Name($"{tag}_{opType}") };
        node.Input.AddRange(inputs);
        node.Output.Add(output ?? Name(tag));
        node.Attribute.AddRange(attributes);
        Nodes.Add(node);
        return node.Output[0];
    }

    public string Reshape(string x, IReadOnlyList<long> shape, string tag, string? output = null) =>
        Op("Reshape", [x, Int64s(tag + "_shape", [.. shape])], tag, output);

    public string Cast(string x, TensorProto.Types.DataType to, string tag, string? output = null) =>
        Op("Cast", [x], tag, output, Attr.Int("to", (int)to));
}
