namespace EdgeDiffusion.Compression;

/// <summary>
/// Packs unsigned indices of n ∈ {1, 2, 3, 4, 6, 8} bits into bytes and back.
/// </summary>
/// <remarks>
/// Layout (little-endian bit order): the packed data is one stream of bits, where stream bit b is bit (b mod 8)
/// of byte (b div 8), bit 0 being the least significant. Value i occupies stream bits [i·n, i·n + n), its least
/// significant bit first. The packed length is ceil(count·n / 8); unused high bits of the last byte are zero.
/// For n = 1, 2, 4, 8 a value never crosses a byte; for n = 3 and 6 it may (e.g. with n = 3, value 2 takes bits 6–7
/// of byte 0 and bit 0 of byte 1). Because the stream is little-endian, value i can be recovered with standard ONNX
/// ops: read the 16-bit little-endian word starting at byte (i·n) div 8 (bytes k and k+1, k+1 padded with 0 past the
/// end), shift right by (i·n) mod 8 and mask with 2^n − 1 — i.e. Gather, Cast, BitShift and BitwiseAnd.
/// <see cref="IndexUnpacking"/> does it in uint8, a period of whole values at a time.
/// </remarks>
public static class BitPacking
{
    /// <summary>Widths supported by <see cref="Pack"/> and <see cref="Unpack"/>.</summary>
    public static IReadOnlyList<int> SupportedBits { get; } = [1, 2, 3, 4, 6, 8];

    /// <summary>Number of bytes needed for <paramref name="count"/> values of <paramref name="bits"/> bits.</summary>
    public static int PackedLength(int count, int bits)
    {
        CheckBits(bits);
        if (count < 0) throw new InvalidArgumentException("count", $"must be non-negative, got {count}");
        return (int)(((long)count * bits + 7) / 8);
    }

    /// <summary>Packs <paramref name="values"/> (each &lt; 2^<paramref name="bits"/>) in the layout described on the class.</summary>
    public static byte[] Pack(ReadOnlySpan<byte> values, int bits)
    {
        var packed = new byte[PackedLength(values.Length, bits)];
        int limit = 1 << bits;
        ulong buffer = 0;
        int buffered = 0;
        int o = 0;
        for (int i = 0; i < values.Length; i++)
        {
            int v = values[i];
            if (v >= limit)
                throw new InvalidArgumentException("values", $"value {v} at index {i} does not fit in {bits} bits (must be < {limit})");
            buffer |= (ulong)v << buffered;
            buffered += bits;
            while (buffered >= 8)
            {
                packed[o++] = (byte)buffer;
                buffer >>= 8;
                buffered -= 8;
            }
        }
        if (buffered > 0) packed[o] = (byte)buffer;
        return packed;
    }

    /// <summary>
    /// Unpacks <paramref name="values"/>.Length values of <paramref name="bits"/> bits from <paramref name="packed"/>,
    /// which must hold at least <see cref="PackedLength"/> bytes.
    /// </summary>
    public static void Unpack(ReadOnlySpan<byte> packed, int bits, Span<byte> values)
    {
        int needed = PackedLength(values.Length, bits);
        if (packed.Length < needed)
            throw new InvalidArgumentException("packed", $"holds {packed.Length} bytes, {values.Length} values of {bits} bits need {needed}");
        uint mask = (1u << bits) - 1;
        ulong buffer = 0;
        int buffered = 0;
        int p = 0;
        for (int i = 0; i < values.Length; i++)
        {
            while (buffered < bits)
            {
                buffer |= (ulong)packed[p++] << buffered;
                buffered += 8;
            }
            values[i] = (byte)(buffer & mask);
            buffer >>= bits;
            buffered -= bits;
        }
    }

    static void CheckBits(int bits)
    {
        if (bits is not (1 or 2 or 3 or 4 or 6 or 8))
            throw new InvalidArgumentException("bits", $"must be one of 1, 2, 3, 4, 6, 8, got {bits}");
    }
}
