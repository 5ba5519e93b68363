using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>
/// One dimension of a declared input or output shape: a fixed size, a symbolic name ("batch", "height") or unknown.
/// Converts implicitly from integers and strings, so shapes read as <c>["batch", 4, 64, 64]</c>.
/// </summary>
public readonly record struct Dim
{
    private Dim(long? value, string? param)
    {
        Value = value;
        Param = param;
    }

    /// <summary>The fixed size, or null.</summary>
    public long? Value { get; }

    /// <summary>The symbolic name, or null.</summary>
    public string? Param { get; }

    /// <summary>A dimension with neither a size nor a name.</summary>
    public static Dim Unknown => default;

    public static Dim Of(long value) =>
        value >= 0 ? new Dim(value, null) : throw new ArgumentOutOfRangeException(nameof(value), value, "a dimension size cannot be negative");

    public static Dim Named(string name) =>
        string.IsNullOrEmpty(name) ? throw new ArgumentException("a symbolic dimension needs a name", nameof(name)) : new Dim(null, name);

    public static implicit operator Dim(long value) => Of(value);
    public static implicit operator Dim(int value) => Of(value);
    public static implicit operator Dim(string name) => Named(name);

    public TensorShapeProto.Types.Dimension ToProto()
    {
        var d = new TensorShapeProto.Types.Dimension();
        if (Value is long v) d.DimValue = v;
        else if (Param is not null) d.DimParam = Param;
        return d;
    }

    public override string ToString() => Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? Param ?? "?";

    /// <summary>A tensor value_info: element type and, unless <paramref name="dims"/> is null (unknown rank), the shape.</summary>
    public static ValueInfoProto TensorValueInfo(string name, TensorProto.Types.DataType elemType, IReadOnlyList<Dim>? dims)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)elemType };
        if (dims is not null)
        {
            tensor.Shape = new TensorShapeProto();
            foreach (var d in dims) tensor.Shape.Dim.Add(d.ToProto());
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }
}
