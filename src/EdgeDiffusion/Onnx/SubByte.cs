namespace EdgeDiffusion.Onnx;

/// <summary>ONNX's packing of 4-bit values: two per byte, the first element in the low nibble.</summary>
public static class SubByte
{
    public static void Pack4(ReadOnlySpan<int> values, Span<byte> packed, bool signed)
    {
        int lo = signed ? -8 : 0, hi = signed ? 7 : 15;
        if (packed.Length != (values.Length + 1) / 2) throw new ArgumentException("packed buffer has the wrong size");
        packed.Clear();
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if (v < lo || v > hi) throw new ArgumentOutOfRangeException(nameof(values), $"value {v} at {i} is outside [{lo}, {hi}]");
            packed[i >> 1] |= (byte)((v & 0xF) << ((i & 1) * 4));
        }
    }

    public static void Unpack4(ReadOnlySpan<byte> packed, Span<int> values, bool signed)
    {
        if (packed.Length != (values.Length + 1) / 2) throw new ArgumentException("packed buffer has the wrong size");
        for (int i = 0; i < values.Length; i++)
        {
            int nibble = (packed[i >> 1] >> ((i & 1) * 4)) & 0xF;
            values[i] = signed && nibble >= 8 ? nibble - 16 : nibble;
        }
    }
}
