using System.Text;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using AT = EdgeDiffusion.Onnx.Protobuf.AttributeProto.Types.AttributeType;

namespace EdgeDiffusion.Onnx;

/// <summary>Typed constructors for node attributes (each sets the attribute's type field, as ONNX requires).</summary>
public static class Attr
{
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AT.Int, I = value };

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AT.Float, F = value };

    public static AttributeProto String(string name, string value) =>
        new() { Name = name, Type = AT.String, S = ByteString.CopyFrom(Encoding.UTF8.GetBytes(value)) };

    public static AttributeProto Ints(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AT.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto Floats(string name, IEnumerable<float> values)
    {
        var a = new AttributeProto { Name = name, Type = AT.Floats };
        a.Floats.AddRange(values);
        return a;
    }

    public static AttributeProto Strings(string name, IEnumerable<string> values)
    {
        var a = new AttributeProto { Name = name, Type = AT.Strings };
        a.Strings.AddRange(values.Select(v => ByteString.CopyFrom(Encoding.UTF8.GetBytes(v))));
        return a;
    }

    public static AttributeProto Tensor(string name, TensorProto value) => new() { Name = name, Type = AT.Tensor, T = value };

    public static AttributeProto Graph(string name, GraphProto value) => new() { Name = name, Type = AT.Graph, G = value };
}
