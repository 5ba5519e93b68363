using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>Facts about ONNX element types: names, storage widths and which typed proto field holds them.</summary>
public static class DataTypes
{
    public static string Name(int dataType) =>
        Enum.IsDefined(typeof(TensorProto.Types.DataType), dataType)
            ? ((TensorProto.Types.DataType)dataType).ToString().ToLowerInvariant()
            : $"type{dataType}";

    /// <summary>Bits one element occupies in raw storage; 0 for strings and unknown types.</summary>
    public static int BitsPerElement(int dataType) => (TensorProto.Types.DataType)dataType switch
    {
        TensorProto.Types.DataType.Float => 32,
        TensorProto.Types.DataType.Uint8 => 8,
        TensorProto.Types.DataType.Int8 => 8,
        TensorProto.Types.DataType.Uint16 => 16,
        TensorProto.Types.DataType.Int16 => 16,
        TensorProto.Types.DataType.Int32 => 32,
        TensorProto.Types.DataType.Int64 => 64,
        TensorProto.Types.DataType.Bool => 8,
        TensorProto.Types.DataType.Float16 => 16,
        TensorProto.Types.DataType.Double => 64,
        TensorProto.Types.DataType.Uint32 => 32,
        TensorProto.Types.DataType.Uint64 => 64,
        TensorProto.Types.DataType.Complex64 => 64,
        TensorProto.Types.DataType.Complex128 => 128,
        TensorProto.Types.DataType.Bfloat16 => 16,
        TensorProto.Types.DataType.Float8E4M3Fn => 8,
        TensorProto.Types.DataType.Float8E4M3Fnuz => 8,
        TensorProto.Types.DataType.Float8E5M2 => 8,
        TensorProto.Types.DataType.Float8E5M2Fnuz => 8,
        TensorProto.Types.DataType.Float8E8M0 => 8,
        TensorProto.Types.DataType.Uint4 => 4,
        TensorProto.Types.DataType.Int4 => 4,
        TensorProto.Types.DataType.Float4E2M1 => 4,
        TensorProto.Types.DataType.Uint2 => 2,
        TensorProto.Types.DataType.Int2 => 2,
        _ => 0,
    };

    /// <summary>Bytes that <paramref name="elements"/> values of the type take in raw storage (sub-byte types packed).</summary>
    public static long RawByteCount(int dataType, long elements)
    {
        int bits = BitsPerElement(dataType);
        if (bits == 0) return -1;
        return bits >= 8 ? checked(elements * (bits / 8)) : (checked(elements * bits) + 7) / 8;
    }
}
