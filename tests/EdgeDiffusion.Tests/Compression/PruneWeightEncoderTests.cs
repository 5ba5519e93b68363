using EdgeDiffusion.Compression;
using EdgeDiffusion.Tests.Onnx;
using Xunit;

namespace EdgeDiffusion.Tests.Compression;

public class PruneWeightEncoderTests
{
    public enum Layout { Conv, MatMul }

    // Conv W [O, I, kh, kw] with I = 8 and MatMul B [K, N] with K = 16: both reduction axes take groups of 4 and 8.
    static WeightUse Use(Layout layout) => layout == Layout.Conv
        ? EncoderTestModels.ConvUse([5, 8, 3, 3])
        : EncoderTestModels.MatMulUse([16, 6]);

    static float[] Weights(WeightUse use, int seed) => EncoderTestModels.Gaussian((int)use.ElementCount, seed);

    static CompressionSpec Magnitude(double sparsity, CompressionSpec? then = null) =>
        new() { Method = CompressionMethod.Prune, Sparsity = sparsity, Then = then };

    static CompressionSpec NM(int n, int m, CompressionSpec? then = null) =>
        new() { Method = CompressionMethod.Prune, N = n, M = m, Then = then };

    static (double[] W, EncodedWeight Encoded) CheckAgainstOrt(WeightUse use, float[] w, IWeightEncoder encoder)
    {
        var (ortW, ortY, enc) = EncoderTestModels.RunEncoded(use, w, encoder);
        Assert.Equal(use.Shape, ortW.Shape);
        Assert.Equal(enc.Reconstructed.Select(v => (double)v), ortW.Values);
        var (_, plainY) = EncoderTestModels.RunPlain(use, enc.Reconstructed);
        OrtRunner.AssertClose(plainY.Values, ortY.Values, atol: 1e-4, rtol: 1e-5);
        Assert.All(enc.Initializers, t => Assert.StartsWith("w.", t.Name));
        return (ortW.Values, enc);
    }

    [Theory]
    [InlineData(0.25, Layout.Conv)]
    [InlineData(0.5, Layout.Conv)]
    [InlineData(0.9, Layout.Conv)]
    [InlineData(0.3, Layout.MatMul)]
    [InlineData(0.5, Layout.MatMul)]
    public void MagnitudePruningZeroesExactlyTheSmallest(double sparsity, Layout layout)
    {
        var use = Use(layout);
        var w = Weights(use, 11);
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(Magnitude(sparsity)));
        var r = enc.Reconstructed;
        int pruned = (int)Math.Round(sparsity * w.Length, MidpointRounding.AwayFromZero);
        Assert.Equal(pruned, r.Count(v => v == 0));
        float maxPruned = Enumerable.Range(0, w.Length).Where(i => r[i] == 0).Max(i => MathF.Abs(w[i]));
        float minKept = Enumerable.Range(0, w.Length).Where(i => r[i] != 0).Min(i => MathF.Abs(w[i]));
        Assert.True(minKept >= maxPruned);
        for (int i = 0; i < w.Length; i++) Assert.True(r[i] == 0 || r[i] == w[i]);

        // Compact: a 1-bit mask and the kept float32 values, no dense zeros.
        int kept = w.Length - pruned;
        Assert.Equal(kept * 4L + (w.Length + 7) / 8, enc.Initializers.Where(t => t.Name.Contains("kept_values") || t.Name.Contains("prune_mask")).Sum(t => t.RawData.Length));
        Assert.True(enc.StoredBytes < w.Length * 4L);
        Assert.Equal("prune", enc.Method);
        Assert.Equal(32, enc.Bits);
        Assert.Equal(13, enc.MinimumOpset);
    }

    [Theory]
    [InlineData(2, 4, Layout.Conv)]
    [InlineData(1, 4, Layout.Conv)]
    [InlineData(2, 8, Layout.Conv)]
    [InlineData(2, 4, Layout.MatMul)]
    [InlineData(3, 8, Layout.MatMul)]
    public void NMKeepsTheNLargestOfEveryMAlongTheReductionAxis(int n, int m, Layout layout)
    {
        var use = Use(layout);
        var w = Weights(use, n * 100 + m);
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(NM(n, m)));
        var r = enc.Reconstructed;

        // Conv W [O, I, kh, kw]: groups run along I (stride kh·kw); MatMul B [K, N]: along K (stride N).
        int axis = PruneWeightEncoder.ReductionAxis(use);
        Assert.Equal(layout == Layout.Conv ? 1 : 0, axis);
        long stride = use.Shape.Skip(axis + 1).Aggregate(1L, (a, d) => a * d), length = use.Shape[axis];
        int groups = 0;
        for (long o = 0; o < w.Length / (length * stride); o++)
            for (long t = 0; t < stride; t++)
                for (long g = 0; g < length; g += m)
                {
                    var positions = Enumerable.Range(0, m).Select(a => (int)((o * length + g + a) * stride + t)).ToArray();
                    var keptHere = positions.Where(i => r[i] != 0).ToArray();
                    Assert.Equal(n, keptHere.Length);
                    Assert.All(keptHere, i => Assert.Equal(w[i], r[i]));
                    float minKept = keptHere.Min(i => MathF.Abs(w[i]));
                    Assert.All(positions.Except(keptHere), i => Assert.True(MathF.Abs(w[i]) <= minKept));
                    groups++;
                }
        Assert.Equal(w.Length / m, groups);
        Assert.Equal(w.Length - w.Length / m * n, r.Count(v => v == 0));
        Assert.Contains($"{n}:{m} along axis {axis}", enc.Detail);
    }

    [Fact]
    public void PruneThenPalettizeGathersKeptValuesFromOneTable()
    {
        var use = Use(Layout.Conv);
        var w = Weights(use, 21);
        var then = new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 3, PaletteGranularity = PaletteGranularity.PerGroupedChannel, PerChannelScale = true };
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(NM(2, 4, then)));
        var mask = new PruneWeightEncoder(NM(2, 4)).KeepMask(use, w);
        var kept = Enumerable.Range(0, w.Length).Where(i => mask[i]).ToArray();
        Assert.All(Enumerable.Range(0, w.Length).Where(i => !mask[i]), i => Assert.Equal(0f, enc.Reconstructed[i]));
        // The list of kept values has no channels: one 8-entry table for all of them, each the nearest entry.
        var levels = kept.Select(i => enc.Reconstructed[i]).Distinct().ToArray();
        Assert.InRange(levels.Length, 2, 8);
        foreach (int i in kept)
        {
            double best = levels.Min(v => Math.Abs(v - (double)w[i]));
            Assert.True(Math.Abs(enc.Reconstructed[i] - (double)w[i]) <= best + 1e-6);
        }
        Assert.Equal("prune+palettize", enc.Method);
        Assert.Equal(3, enc.Bits);
        Assert.Equal(18, enc.MinimumOpset);
        Assert.True(WeightSnr.Db(w, enc.Reconstructed) > 3);
    }

    public static TheoryData<QuantizedType, bool, QuantizationGranularity, int> LinearCases() => new()
    {
        { QuantizedType.Int8, true, QuantizationGranularity.PerTensor, 13 },
        { QuantizedType.UInt8, false, QuantizationGranularity.PerChannel, 13 }, // per-channel → per-tensor on a list
        { QuantizedType.Int4, true, QuantizationGranularity.PerBlock, 21 },
        { QuantizedType.UInt8, false, QuantizationGranularity.PerBlock, 21 },
    };

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void PruneThenLinearDequantizesTheKeptValues(QuantizedType type, bool symmetric, QuantizationGranularity granularity, int opset)
    {
        var use = Use(Layout.MatMul);
        var w = Weights(use, 31);
        var then = new CompressionSpec { Method = CompressionMethod.Linear, Dtype = type, Symmetric = symmetric, Granularity = granularity, BlockSize = 32 };
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(Magnitude(0.4, then)));
        var mask = new PruneWeightEncoder(Magnitude(0.4)).KeepMask(use, w);
        var kept = Enumerable.Range(0, w.Length).Where(i => mask[i]).ToArray();
        var spec = granularity == QuantizationGranularity.PerBlock
            ? QuantizationSpec.PerBlock(type, symmetric, 0, 32)
            : QuantizationSpec.PerTensor(type, symmetric);
        var expected = LinearQuantizer.Quantize(kept.Select(i => w[i]).ToArray(), [kept.Length], spec).Dequantize();
        Assert.Equal(expected, kept.Select(i => enc.Reconstructed[i]));
        Assert.All(Enumerable.Range(0, w.Length).Where(i => !mask[i]), i => Assert.Equal(0f, enc.Reconstructed[i]));
        Assert.Equal("prune+linear", enc.Method);
        Assert.Equal(type is QuantizedType.Int4 or QuantizedType.UInt4 ? 4 : 8, enc.Bits);
        Assert.Equal(opset, enc.MinimumOpset);
    }

    [Fact]
    public void AnInjectedValueEncoderIsUsed()
    {
        var use = Use(Layout.MatMul);
        var w = Weights(use, 41);
        var values = new PaletteWeightEncoder(new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 2 });
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(Magnitude(0.5), values));
        Assert.Equal("prune+palettize", enc.Method);
        Assert.InRange(enc.Reconstructed.Where(v => v != 0).Distinct().Count(), 1, 4);
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(0, 4)]
    [InlineData(2, 1)]
    [InlineData(5, 4)]
    [InlineData(2, 65)]
    public void BadNMIsRejected(int n, int m)
    {
        var ex = Assert.Throws<InvalidArgumentException>(() => new PruneWeightEncoder(NM(n, m)));
        Assert.Equal("--n-m", ex.Argument);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(-0.5)]
    [InlineData(double.NaN)]
    public void BadSparsityIsRejected(double sparsity) =>
        Assert.Equal("--sparsity", Assert.Throws<InvalidArgumentException>(() => new PruneWeightEncoder(Magnitude(sparsity))).Argument);

    [Fact]
    public void UnfitShapesAndNestedPruningAreRejected()
    {
        // Conv W [4, 6, 3, 3]: I = 6 is not a multiple of 4.
        var encoder = new PruneWeightEncoder(NM(2, 4));
        var use = EncoderTestModels.ConvUse([4, 6, 3, 3]);
        Assert.Contains("multiple of 4", encoder.CannotEncode(use));
        Assert.Throws<InvalidArgumentException>(() => encoder.Encode(use, new float[use.ElementCount], n => n));
        Assert.Equal("--then", Assert.Throws<InvalidArgumentException>(() => new PruneWeightEncoder(Magnitude(0.5, Magnitude(0.5)))).Argument);
        Assert.Equal("--bits", Assert.Throws<InvalidArgumentException>(() =>
            new PruneWeightEncoder(Magnitude(0.5, new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 5 }))).Argument);
    }

    [Fact]
    public void TiesArePrunedEarliestFirstAndOneWeightAlwaysStays()
    {
        var use = Use(Layout.MatMul);
        var w = Enumerable.Repeat(1f, (int)use.ElementCount).ToArray();
        var mask = new PruneWeightEncoder(Magnitude(0.25)).KeepMask(use, w);
        Assert.Equal(Enumerable.Range(0, w.Length).Select(i => i >= w.Length / 4), mask);
        var (_, enc) = CheckAgainstOrt(use, w, new PruneWeightEncoder(Magnitude(0.9999)));
        Assert.Equal(1, enc.Reconstructed.Count(v => v != 0));
    }
}
