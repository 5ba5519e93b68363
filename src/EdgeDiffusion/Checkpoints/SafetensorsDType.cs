namespace EdgeDiffusion.Checkpoints;

/// <summary>The element types of the safetensors format, by the names its headers use ("F32", "BF16", …).</summary>
public enum SafetensorsDType
{
    Bool, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
}

public static class SafetensorsDTypes
{
    private static readonly Dictionary<string, SafetensorsDType> ByName = new(StringComparer.Ordinal)
    {
        ["BOOL"] = SafetensorsDType.Bool, ["U8"] = SafetensorsDType.U8, ["I8"] = SafetensorsDType.I8,
        ["F8_E5M2"] = SafetensorsDType.F8_E5M2, ["F8_E4M3"] = SafetensorsDType.F8_E4M3,
        ["I16"] = SafetensorsDType.I16, ["U16"] = SafetensorsDType.U16, ["F16"] = SafetensorsDType.F16,
        ["BF16"] = SafetensorsDType.BF16, ["I32"] = SafetensorsDType.I32, ["U32"] = SafetensorsDType.U32,
        ["F32"] = SafetensorsDType.F32, ["F64"] = SafetensorsDType.F64, ["I64"] = SafetensorsDType.I64,
        ["U64"] = SafetensorsDType.U64,
    };

    /// <summary>The names a header may use, for error messages.</summary>
    public static string KnownNames => string.Join(", ", ByName.Keys);

    /// <summary>The dtype a header names; false for a name the format (as this reader knows it) does not have.</summary>
    public static bool TryParse(string name, out SafetensorsDType dtype) => ByName.TryGetValue(name, out dtype);

    /// <summary>The name a header uses for <paramref name="dtype"/>.</summary>
    public static string Name(this SafetensorsDType dtype) => dtype == SafetensorsDType.Bool ? "BOOL" : dtype.ToString();

    /// <summary>Bytes per element.</summary>
    public static int Size(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.Bool or SafetensorsDType.U8 or SafetensorsDType.I8
            or SafetensorsDType.F8_E5M2 or SafetensorsDType.F8_E4M3 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };
}
