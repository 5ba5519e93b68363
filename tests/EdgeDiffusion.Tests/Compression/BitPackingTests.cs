using EdgeDiffusion.Compression;

namespace EdgeDiffusion.Tests.Compression;

public class BitPackingTests
{
    public static TheoryData<int> Widths => new() { 1, 2, 3, 4, 6, 8 };

    [Theory]
    [MemberData(nameof(Widths))]
    public void RoundTripsRandomData(int bits)
    {
        var rng = new Random(1234 + bits);
        foreach (int length in new[] { 0, 1, 5, 7, 8, 9, 13, 64, 1001 })
        {
            var values = new byte[length];
            for (int i = 0; i < length; i++) values[i] = (byte)rng.Next(1 << bits);
            var packed = BitPacking.Pack(values, bits);
            Assert.Equal((length * bits + 7) / 8, packed.Length);
            var back = new byte[length];
            BitPacking.Unpack(packed, bits, back);
            Assert.Equal(values, back);
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void StreamLayoutMatchesOnnxStyleDecoding(int bits)
    {
        // Independent decoder, as a chain of ONNX ops would do it: 16-bit little-endian word at byte (i·n)/8,
        // shifted right by (i·n) mod 8, masked with 2^n − 1.
        var rng = new Random(99);
        var values = new byte[37];
        for (int i = 0; i < values.Length; i++) values[i] = (byte)rng.Next(1 << bits);
        var packed = BitPacking.Pack(values, bits);
        for (int i = 0; i < values.Length; i++)
        {
            int bit = i * bits;
            int k = bit / 8;
            int word = packed[k] | (k + 1 < packed.Length ? packed[k + 1] << 8 : 0);
            Assert.Equal(values[i], (word >> (bit % 8)) & ((1 << bits) - 1));
        }
    }

    [Fact]
    public void OneBitHandWorked()
    {
        // [1,0,1,1,0,0,0,1 | 1]: byte 0 bits b0..b7 = 1,0,1,1,0,0,0,1 → 1+4+8+128 = 141 = 0x8D; byte 1 = 0x01.
        Assert.Equal(new byte[] { 0x8D, 0x01 }, BitPacking.Pack([1, 0, 1, 1, 0, 0, 0, 1, 1], 1));
    }

    [Fact]
    public void TwoBitHandWorked()
    {
        // [1,2,3,0 | 3]: 1 | 2<<2 | 3<<4 | 0<<6 = 1+8+48 = 57 = 0x39; byte 1 = 0x03.
        Assert.Equal(new byte[] { 0x39, 0x03 }, BitPacking.Pack([1, 2, 3, 0, 3], 2));
    }

    [Fact]
    public void ThreeBitHandWorked()
    {
        // [5,3,6]: 5 + 3<<3 + 6<<6 = 5+24+384 = 413 = 0x19D → 0x9D, 0x01 (value 2 crosses into byte 1).
        Assert.Equal(new byte[] { 0x9D, 0x01 }, BitPacking.Pack([5, 3, 6], 3));
        // [0..7]: octal 76543210 = binary 111 110 101 100 011 010 001 000 = 0xFAC688 → 0x88, 0xC6, 0xFA.
        Assert.Equal(new byte[] { 0x88, 0xC6, 0xFA }, BitPacking.Pack([0, 1, 2, 3, 4, 5, 6, 7], 3));
    }

    [Fact]
    public void FourBitHandWorked()
    {
        // [0xA,0x3 | 0xF]: low nibble first → 0x3A, then 0x0F.
        Assert.Equal(new byte[] { 0x3A, 0x0F }, BitPacking.Pack([0xA, 0x3, 0xF], 4));
    }

    [Fact]
    public void SixBitHandWorked()
    {
        // [63,1,42]: 63 + 1<<6 + 42<<12 = 0x3F + 0x40 + 0x2A000 = 0x2A07F → 0x7F, 0xA0, 0x02.
        Assert.Equal(new byte[] { 0x7F, 0xA0, 0x02 }, BitPacking.Pack([63, 1, 42], 6));
        // [1,2,3,4]: 1 + 2<<6 + 3<<12 + 4<<18 = 0x1 + 0x80 + 0x3000 + 0x100000 = 0x103081 → 0x81, 0x30, 0x10.
        Assert.Equal(new byte[] { 0x81, 0x30, 0x10 }, BitPacking.Pack([1, 2, 3, 4], 6));
    }

    [Fact]
    public void EightBitIsIdentity()
    {
        Assert.Equal(new byte[] { 0, 255, 7 }, BitPacking.Pack([0, 255, 7], 8));
    }

    [Fact]
    public void HandWorkedBytesUnpack()
    {
        var three = new byte[8];
        BitPacking.Unpack([0x88, 0xC6, 0xFA], 3, three);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 4, 5, 6, 7 }, three);
        var six = new byte[3];
        BitPacking.Unpack([0x7F, 0xA0, 0x02], 6, six);
        Assert.Equal(new byte[] { 63, 1, 42 }, six);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(-1)]
    public void RejectsUnsupportedWidths(int bits)
    {
        var e = Assert.Throws<InvalidArgumentException>(() => BitPacking.Pack([0], bits));
        Assert.Equal("bits", e.Argument);
        Assert.Throws<InvalidArgumentException>(() => BitPacking.Unpack([0], bits, new byte[1]));
    }

    [Fact]
    public void RejectsValueTooWide()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => BitPacking.Pack([1, 8, 2], 3));
        Assert.Contains("8", e.Message);
        Assert.Contains("index 1", e.Message);
    }

    [Fact]
    public void RejectsShortPackedBuffer()
    {
        Assert.Throws<InvalidArgumentException>(() => BitPacking.Unpack([0xFF], 3, new byte[3]));
    }
}
