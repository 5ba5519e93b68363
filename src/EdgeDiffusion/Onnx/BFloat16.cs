namespace EdgeDiffusion.Onnx;

/// <summary>bfloat16: the upper 16 bits of an IEEE 754 float32. Conversion from float rounds to nearest even.</summary>
public readonly record struct BFloat16(ushort Bits)
{
    public static BFloat16 FromFloat(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return new BFloat16((ushort)((bits >> 16) | 0x0040));
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return new BFloat16((ushort)((bits + rounding) >> 16));
    }

    public float ToFloat() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    public static explicit operator float(BFloat16 value) => value.ToFloat();
    public static explicit operator BFloat16(float value) => FromFloat(value);
}
