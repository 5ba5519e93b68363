using EdgeDiffusion.Compression;
using Xunit;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>The in-graph unpacking against <see cref="BitPacking.Unpack"/>, run by ONNX Runtime.</summary>
public class IndexUnpackingTests
{
    public static TheoryData<int, int> WidthsAndCounts()
    {
        var data = new TheoryData<int, int>();
        foreach (int bits in BitPacking.SupportedBits)
            foreach (int count in new[] { 1, 5, 8, 9, 13, 1001 })
                data.Add(bits, count);
        return data;
    }

    [Theory]
    [MemberData(nameof(WidthsAndCounts))]
    public void OrtUnpacksWhatBitPackingPacks(int bits, int count)
    {
        var rng = new Random(bits * 1000 + count);
        var values = new byte[count];
        for (int i = 0; i < count; i++) values[i] = (byte)rng.Next(1 << bits);
        values[0] = (byte)((1 << bits) - 1); // all bits set somewhere
        var tensor = IndexUnpacking.Pack(values, bits);

        // The stored bytes are BitPacking's stream (zero-padded to whole periods) and BitPacking reads them back.
        var packed = BitPacking.Pack(values, bits);
        var raw = tensor.RawData.ToByteArray();
        Assert.Equal(packed, raw.AsSpan(0, packed.Length).ToArray());
        Assert.All(raw.AsSpan(packed.Length).ToArray(), b => Assert.Equal(0, b));
        var (q, p) = IndexUnpacking.Period(bits);
        Assert.Equal(IndexUnpacking.Periods(count, bits) * p, raw.Length);
        Assert.Equal(q * bits, p * 8);
        var unpacked = new byte[count];
        BitPacking.Unpack(raw, bits, unpacked);

        // Opset exactly as declared: 13-only ops must run at 17 (the lowest GraphBuilder builds), 3/6 bits at 18.
        var y = EncoderTestModels.RunNodes(Math.Max(17, IndexUnpacking.MinimumOpset(bits)), DT.Uint8, [count], e =>
            IndexUnpacking.Emit(e, e.Initializer("packed", tensor), bits, [count], "out"));
        Assert.Equal([count], y.Shape);
        Assert.Equal(unpacked.Select(v => (double)v), y.Values);
        Assert.Equal(values.Select(v => (double)v), y.Values);
    }

    [Fact]
    public void UnpacksIntoAnyShape()
    {
        var values = Enumerable.Range(0, 2 * 3 * 5).Select(i => (byte)(i * 7 % 8)).ToArray();
        var y = EncoderTestModels.RunNodes(18, DT.Uint8, [2, 3, 5], e =>
            IndexUnpacking.Emit(e, e.Initializer("packed", IndexUnpacking.Pack(values, 3)), 3, [2, 3, 5], "out"));
        Assert.Equal([2L, 3, 5], y.Shape);
        Assert.Equal(values.Select(v => (double)v), y.Values);
    }

    [Theory]
    [InlineData(1, 8, 1)]
    [InlineData(2, 4, 1)]
    [InlineData(3, 8, 3)]
    [InlineData(4, 2, 1)]
    [InlineData(6, 4, 3)]
    [InlineData(8, 1, 1)]
    public void PeriodsHoldWholeValues(int bits, int values, int bytes)
    {
        Assert.Equal((values, bytes), IndexUnpacking.Period(bits));
        Assert.Equal(values * bits, bytes * 8);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(9)]
    public void RejectsOtherWidths(int bits)
    {
        var ex = Assert.Throws<InvalidArgumentException>(() => IndexUnpacking.Period(bits));
        Assert.Equal("bits", ex.Argument);
    }
}
