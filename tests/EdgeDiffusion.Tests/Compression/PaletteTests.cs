using EdgeDiffusion.Compression;

namespace EdgeDiffusion.Tests.Compression;

public class PaletteTests
{
    static float[] Normal(int count, int seed)
    {
        var rng = new Random(seed);
        var w = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            w[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return w;
    }

    [Fact]
    public void SnrOnHandExamples()
    {
        // Σw² = 9+16 = 25, Σe² = 0.5² = 0.25 → 10·log10(100) = 20 dB.
        Assert.Equal(20.0, Palette.WeightSnrDb([3f, 4f], [3f, 3.5f]), 12);
        // Σw² = 1+4+9+16 = 30, Σe² = 1 → 10·log10(30) = 14.771212547196624 dB.
        Assert.Equal(14.771212547196624, Palette.WeightSnrDb([1f, 2f, 3f, 4f], [1f, 2f, 3f, 3f]), 12);
        Assert.Equal(double.PositiveInfinity, Palette.WeightSnrDb([1f, -2f], [1f, -2f]));
    }

    [Fact]
    public void GroupedTablesAreExactOnTwoLevelGroups()
    {
        // shape [4, 3], two channels per table, 1 bit: group 0 (channels 0–1) uses {-1, 2}, group 1 (channels 2–3) {0.5, 7}.
        float[] w =
        [
            -1f, 2f, 2f,
            2f, -1f, -1f,
            7f, 0.5f, 7f,
            0.5f, 0.5f, 7f,
        ];
        var p = Palette.Build(w, [4, 3], bits: 1, groupSize: 2);
        Assert.Equal(2, p.Groups);
        Assert.Equal(3, p.ChannelSize);
        Assert.Equal(new[] { -1f, 2f, 0.5f, 7f }, p.Luts);
        Assert.Equal(new byte[] { 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1 }, p.Indices);
        Assert.Equal(w, p.Reconstruct());
        Assert.Equal(double.PositiveInfinity, p.SnrDb(w));
    }

    [Fact]
    public void LastGroupMayBeSmaller()
    {
        // shape [3, 2], groupSize 2: group 0 = channels 0–1, group 1 = channel 2 alone.
        float[] w = [1f, 2f, 1f, 2f, 5f, 6f];
        var p = Palette.Build(w, [3, 2], bits: 1, groupSize: 2);
        Assert.Equal(2, p.Groups);
        Assert.Equal(new[] { 1f, 2f, 5f, 6f }, p.Luts);
        Assert.Equal(w, p.Reconstruct());
    }

    [Fact]
    public void ReconstructionReadsTableOfEachChannelsGroup()
    {
        var w = Normal(6 * 50, 3);
        var p = Palette.Build(w, [6, 5, 10], bits: 2, groupSize: 4);
        Assert.Equal(2, p.Groups);
        var r = p.Reconstruct();
        for (int i = 0; i < w.Length; i++)
        {
            int channel = i / 50, group = channel < 4 ? 0 : 1;
            Assert.Equal(p.Luts[group * 4 + p.Indices[i]], r[i]);
        }
    }

    [Fact]
    public void ErrorFallsWithMoreBits()
    {
        var w = Normal(40 * 200, 8);
        double previous = double.NegativeInfinity;
        for (int bits = 1; bits <= 6; bits++)
        {
            var snr = Palette.PerTensor(w, [40, 200], bits).SnrDb(w);
            Assert.True(snr > previous + 1, $"{bits} bits: {snr} dB, {bits - 1} bits: {previous} dB");
            previous = snr;
        }
    }

    [Theory]
    // Lloyd–Max quantizer of a unit Gaussian: 1 bit MSE = 1 − 2/π = 0.3634 (4.40 dB); 2 bits MSE = 0.1175 (9.30 dB).
    [InlineData(1, 4.396)]
    [InlineData(2, 9.300)]
    public void GaussianSnrMatchesLloydMax(int bits, double expectedDb)
    {
        var w = Normal(100_000, 21);
        var snr = Palette.PerTensor(w, [100, 1000], bits).SnrDb(w);
        Assert.InRange(snr, expectedDb - 0.15, expectedDb + 0.15);
    }

    [Fact]
    public void RejectsBadArguments()
    {
        float[] w = [1f, 2f, 3f, 4f];
        Assert.Equal("groupSize", Assert.Throws<InvalidArgumentException>(() => Palette.Build(w, [2, 2], 1, 0)).Argument);
        Assert.Equal("groupSize", Assert.Throws<InvalidArgumentException>(() => Palette.Build(w, [2, 2], 1, 3)).Argument);
        Assert.Equal("shape", Assert.Throws<InvalidArgumentException>(() => Palette.Build(w, [3, 2], 1, 1)).Argument);
        Assert.Equal("bits", Assert.Throws<InvalidArgumentException>(() => Palette.Build(w, [2, 2], 9, 1)).Argument);
        Assert.Equal("reconstructed", Assert.Throws<InvalidArgumentException>(() => Palette.WeightSnrDb(w, [1f])).Argument);
    }
}
