using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Stores n-bit indices packed (the <see cref="BitPacking"/> layout) in a uint8 initializer and unpacks them in the graph
/// with cheap element-wise standard ops.
/// </summary>
/// <remarks>
/// The packed stream is cut into periods of P bytes holding Q values each (n = 1, 2, 4: one byte of 8/n values; n = 3: three
/// bytes of 8; n = 6: three bytes of 4; n = 8: one byte of one) and stored as a [periods, P] tensor, the count padded with
/// zero indices to whole periods. Value j of a period starts at bit s = j·n mod 8 of byte j·n div 8. The graph works on
/// planes (Transpose to [P, periods], Gather rows to [Q, periods]) so that a per-j shift column [Q, 1] broadcasts along
/// long rows, extracts every value at once, and one Transpose back gives the stream order:
/// <list type="bullet">
/// <item>n = 1, 2, 4: v = (b &lt;&lt; (8 − n − s)) &gt;&gt; (8 − n) — two uint8 BitShifts, the left one dropping the bits above the value (opset 11).</item>
/// <item>n = 3, 6 (a value may cross into the next byte): lo = Gather(bytes, byte of j), hi = Gather(bytes, next byte),
/// v = ((lo &gt;&gt; s) | ((hi &lt;&lt; (8 − s)) &amp; cross_j)) &amp; (2^n − 1), cross_j = 0xFF when value j crosses, else 0
/// (BitwiseAnd/BitwiseOr: opset 18).</item>
/// <item>n = 8: the bytes are the indices.</item>
/// </list>
/// The [periods, Q] result is flattened, sliced to the count when padded, and reshaped to the caller's shape. Planar
/// rather than [periods, Q] broadcasting: ONNX Runtime runs a broadcast as one loop per run of the larger operand, and
/// runs of 2–8 values made decoding several times slower.
/// </remarks>
public static class IndexUnpacking
{
    /// <summary>Values per period (Q) and bytes per period (P) for <paramref name="bits"/>.</summary>
    public static (int Values, int Bytes) Period(int bits) => bits switch
    {
        1 => (8, 1),
        2 => (4, 1),
        3 => (8, 3),
        4 => (2, 1),
        6 => (4, 3),
        8 => (1, 1),
        _ => throw new InvalidArgumentException("bits", $"{bits} is not an index width; use {string.Join(", ", BitPacking.SupportedBits)}"),
    };

    /// <summary>The default-domain opset <see cref="Emit"/> needs: 18 for 3 and 6 bits (BitwiseAnd/Or), else 13.</summary>
    public static int MinimumOpset(int bits) => bits is 3 or 6 ? 18 : 13;

    /// <summary>Number of periods holding <paramref name="count"/> values.</summary>
    public static long Periods(long count, int bits)
    {
        var (q, _) = Period(bits);
        return (count + q - 1) / q;
    }

    /// <summary>
    /// The packed uint8 tensor for <paramref name="indices"/> (each &lt; 2^bits): <see cref="BitPacking.Pack"/>'s bytes,
    /// zero-extended to whole periods, shaped [periods, P] (for 8 bits: [count]).
    /// </summary>
    public static TensorProto Pack(ReadOnlySpan<byte> indices, int bits, string name = "")
    {
        var (_, p) = Period(bits);
        long periods = Periods(indices.Length, bits);
        var packed = BitPacking.Pack(indices, bits);
        if (packed.Length != periods * p) Array.Resize(ref packed, checked((int)(periods * p))); // zero padding = zero indices
        long[] dims = bits == 8 ? [indices.Length] : [periods, p];
        return TensorData.Create<byte>(name, dims, packed);
    }

    /// <summary>Appends the nodes unpacking <paramref name="packed"/> (made by <see cref="Pack"/>) to uint8 indices of <paramref name="shape"/>.</summary>
    internal static string Emit(NodeEmitter e, string packed, int bits, IReadOnlyList<long> shape, string? output = null)
    {
        var (q, p) = Period(bits);
        long count = shape.Aggregate(1L, (a, d) => a * d);
        long periods = Periods(count, bits);
        if (bits == 8) return e.Reshape(packed, shape, "idx", output);

        // Planar work: rows are the Q value slots (and P byte planes), columns the periods, so every broadcast applies one
        // shift or mask to a whole row (long contiguous runs) instead of a 4-element one to each of a million periods.
        string Column(string tag, byte[] v) => e.Initializer(tag, TensorData.Create<byte>("", [v.Length, 1], v));
        string values; // [Q, periods] uint8
        if (p == 1)
        {
            var up = new byte[q];
            for (int j = 0; j < q; j++) up[j] = (byte)(8 - bits - j * bits);
            string row = e.Reshape(packed, [1, periods], "idx_bytes");
            string left = e.Op("BitShift", [row, Column("idx_lshift", up)], "idx_hi_cleared", null, Attr.String("direction", "LEFT"));
            values = e.Op("BitShift", [left, e.UInt8s("idx_rshift", (byte)(8 - bits))], "idx_planes", null, Attr.String("direction", "RIGHT"));
        }
        else
        {
            var loIndex = new long[q];
            var hiIndex = new long[q];
            var shift = new byte[q];
            var hiShift = new byte[q];
            var cross = new byte[q];
            for (int j = 0; j < q; j++)
            {
                int offset = j * bits, b = offset / 8, s = offset % 8;
                loIndex[j] = b;
                shift[j] = (byte)s;
                bool crosses = s + bits > 8;
                hiIndex[j] = crosses ? b + 1 : b; // any byte of the period does when masked out
                hiShift[j] = crosses ? (byte)(8 - s) : (byte)0;
                cross[j] = crosses ? (byte)0xFF : (byte)0;
            }
            string planes = e.Op("Transpose", [packed], "idx_byte_planes", null, Attr.Ints("perm", [1, 0]));
            string lo = e.Op("Gather", [planes, e.Int64s("idx_lo_byte", loIndex)], "idx_lo", null, Attr.Int("axis", 0));
            string hi = e.Op("Gather", [planes, e.Int64s("idx_hi_byte", hiIndex)], "idx_hi", null, Attr.Int("axis", 0));
            string loBits = e.Op("BitShift", [lo, Column("idx_lo_shift", shift)], "idx_lo_bits", null, Attr.String("direction", "RIGHT"));
            string hiBits = e.Op("BitShift", [hi, Column("idx_hi_shift", hiShift)], "idx_hi_bits", null, Attr.String("direction", "LEFT"));
            string hiKept = e.Op("BitwiseAnd", [hiBits, Column("idx_cross", cross)], "idx_hi_kept");
            string joined = e.Op("BitwiseOr", [loBits, hiKept], "idx_joined");
            values = e.Op("BitwiseAnd", [joined, e.UInt8s("idx_mask", (byte)((1 << bits) - 1))], "idx_planes");
        }
        values = e.Op("Transpose", [values], "idx_values", null, Attr.Ints("perm", [1, 0])); // [periods, Q]: stream order
        if (periods * q == count) return e.Reshape(values, shape, "idx", output);
        string flat = e.Reshape(values, [periods * q], "idx_flat");
        string sliced = e.Op("Slice", [flat, e.Int64s("idx_start", 0), e.Int64s("idx_end", count), e.Int64s("idx_axes", 0)], "idx_sliced");
        return shape.Count == 1 && output is null ? sliced : e.Reshape(sliced, shape, "idx", output);
    }
}
