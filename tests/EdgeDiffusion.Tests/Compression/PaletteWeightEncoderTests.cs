using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using Xunit;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

public class PaletteWeightEncoderTests
{
    public enum Layout { Conv, MatMul }

    // Odd sizes: 7 output channels (groups of 3 leave a partial one) and element counts that are not whole periods.
    static readonly long[] ConvShape = [7, 5, 3, 3];
    static readonly long[] MatMulShape = [25, 10];

    static WeightUse Use(Layout layout) => layout == Layout.Conv ? EncoderTestModels.ConvUse(ConvShape) : EncoderTestModels.MatMulUse(MatMulShape);

    /// <summary>Gaussian weights whose output channel c is scaled by 1 + c, so channels differ in range.</summary>
    static float[] Weights(WeightUse use, int seed)
    {
        var w = EncoderTestModels.Gaussian((int)use.ElementCount, seed);
        for (int i = 0; i < w.Length; i++) w[i] *= 1 + Channel(use, i);
        return w;
    }

    static int Channel(WeightUse use, int i) => use.OutputChannelAxis == 0
        ? (int)(i / (use.ElementCount / use.Shape[0]))
        : (int)(i % use.Shape[1]);

    static CompressionSpec Spec(int bits, bool grouped, bool scale) => new()
    {
        Method = CompressionMethod.Palettize,
        Bits = bits,
        PaletteGranularity = grouped ? PaletteGranularity.PerGroupedChannel : PaletteGranularity.PerTensor,
        GroupSize = 3,
        PerChannelScale = scale,
        Seed = 7,
    };

    public static TheoryData<int, Layout, bool, bool> Cases()
    {
        var data = new TheoryData<int, Layout, bool, bool>();
        foreach (int bits in BitPacking.SupportedBits)
            foreach (var layout in Enum.GetValues<Layout>())
                foreach (bool grouped in new[] { false, true })
                    foreach (bool scale in new[] { false, true })
                        data.Add(bits, layout, grouped, scale);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OrtComputesTheReconstructionAndItIsTheNearestTableEntry(int bits, Layout layout, bool grouped, bool scale)
    {
        var use = Use(layout);
        var w = Weights(use, bits * 10 + (int)layout);
        var (ortW, ortY, enc) = EncoderTestModels.RunEncoded(use, w, new PaletteWeightEncoder(Spec(bits, grouped, scale)));

        // The graph computes exactly the C# reconstruction, and a Conv/MatMul on it matches the plain model.
        Assert.Equal(use.Shape, ortW.Shape);
        Assert.Equal(enc.Reconstructed.Select(v => (double)v), ortW.Values);
        var (_, plainY) = EncoderTestModels.RunPlain(use, enc.Reconstructed);
        OrtRunner.AssertClose(plainY.Values, ortY.Values, atol: 1e-4, rtol: 1e-5);

        // The definition: ŵ = table_g[j]·s_c with table_g[j] the entry nearest to w / s_c, s_c = max|w| of channel c.
        int k = 1 << bits, channels = (int)use.Shape[use.OutputChannelAxis];
        var lut = Initializer(enc, "palette_lut");
        int groups = grouped ? (channels + 2) / 3 : 1;
        Assert.Equal(groups * k, lut.Length);
        var scales = scale ? Initializer(enc, "palette_scale") : null;
        if (scales is not null)
            for (int c = 0; c < channels; c++)
                Assert.Equal(Enumerable.Range(0, w.Length).Where(i => Channel(use, i) == c).Max(i => MathF.Abs(w[i])), scales[c]);
        for (int i = 0; i < w.Length; i++)
        {
            int c = Channel(use, i), g = grouped ? c / 3 : 0;
            float s = scales?[c] ?? 1f, target = scales is null ? w[i] : w[i] / s;
            var table = lut.AsSpan(g * k, k).ToArray();
            int j = Array.FindIndex(table, v => (scales is null ? v : v * s) == enc.Reconstructed[i]);
            Assert.True(j >= 0, $"weight {i}: {enc.Reconstructed[i]} is not an entry of table {g}");
            double best = table.Min(v => Math.Abs(v - (double)target));
            Assert.True(Math.Abs(table[j] - (double)target) <= best + 1e-6, $"weight {i}: entry {j} is not the nearest");
        }

        // Stored compactly: the packed indices take n bits per weight (up to one period of padding).
        var (q, p) = IndexUnpacking.Period(bits);
        long indexBytes = enc.Initializers.Single(t => t.Name.EndsWith(".palette_indices", StringComparison.Ordinal)).RawData.Length;
        Assert.Equal((w.Length + q - 1) / q * p, indexBytes);
        Assert.Equal("palettize", enc.Method);
        Assert.Equal(bits, enc.Bits);
        Assert.Equal(bits is 3 or 6 ? 18 : 13, enc.MinimumOpset);
        Assert.Equal("w", enc.OutputName);
        Assert.All(enc.Initializers, t => Assert.StartsWith("w.", t.Name));
    }

    static float[] Initializer(EncodedWeight enc, string suffix) =>
        TensorData.Read<float>(enc.Initializers.Single(t => t.Name.EndsWith("." + suffix, StringComparison.Ordinal)));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(6)]
    public void FewDistinctValuesAreKeptExactly(int bits)
    {
        var use = Use(Layout.MatMul);
        var levels = Enumerable.Range(0, 1 << bits).Select(j => j * 0.25f - 3f).ToArray();
        var w = Enumerable.Range(0, (int)use.ElementCount).Select(i => levels[i * 7 % levels.Length]).ToArray();
        var (ortW, _, enc) = EncoderTestModels.RunEncoded(use, w, new PaletteWeightEncoder(Spec(bits, grouped: false, scale: false)));
        Assert.Equal(w, enc.Reconstructed);
        Assert.Equal(w.Select(v => (double)v), ortW.Values);
    }

    [Fact]
    public void GaussianSnrFollowsTheory()
    {
        // High-resolution theory (Panter–Dite) for the optimal n-level quantizer of a Gaussian: SNR ≈ 6.02·n − 4.35 dB
        // (31.8 dB at 6 bits); the exact Lloyd–Max 16-level value is 20.22 dB.
        var use = new WeightUse("w", [256, 256], [new WeightConsumer("mm", "MatMul", 1)]);
        var w = EncoderTestModels.Gaussian(256 * 256, 3, 0.02f);
        double Snr(int bits) => WeightSnr.Db(w, new PaletteWeightEncoder(Spec(bits, false, false)).Encode(use, w, n => n).Reconstructed);
        double six = Snr(6), four = Snr(4);
        Assert.InRange(six, 30.8, 32.8);
        Assert.InRange(four, 20.0, 20.5);
    }

    [Fact]
    public void GroupedTablesAndScalesHelpWhenChannelsDiffer()
    {
        var use = new WeightUse("w", [32, 64, 3, 3], [new WeightConsumer("conv", "Conv", 1)]);
        var w = EncoderTestModels.Gaussian((int)use.ElementCount, 9);
        for (int i = 0; i < w.Length; i++) w[i] *= MathF.Pow(1.2f, i / (64 * 9)); // channel ranges spread over 280×
        // The tensor's SNR is dominated by the widest channels; the narrow ones show what per-channel tables buy.
        int channelSize = 64 * 9;
        double WorstChannelDb(bool grouped, bool scale)
        {
            var r = new PaletteWeightEncoder(Spec(4, grouped, scale)).Encode(use, w, n => n).Reconstructed;
            return Enumerable.Range(0, 32).Min(c => WeightSnr.Db(w.AsSpan(c * channelSize, channelSize), r.AsSpan(c * channelSize, channelSize)));
        }
        double tensor = WorstChannelDb(false, false), grouped = WorstChannelDb(true, false), scaled = WorstChannelDb(false, true);
        Assert.True(grouped > tensor + 10, $"worst channel: grouped {grouped:F1} dB vs per-tensor {tensor:F1} dB");
        Assert.True(scaled > tensor + 10, $"worst channel: scaled {scaled:F1} dB vs per-tensor {tensor:F1} dB");
        Assert.True(scaled > 15, $"worst channel: scaled {scaled:F1} dB");
    }

    [Fact]
    public void EncodingIsDeterministic()
    {
        var use = Use(Layout.Conv);
        var w = Weights(use, 1);
        var encoder = new PaletteWeightEncoder(Spec(4, true, true));
        Assert.Equal(encoder.Encode(use, w, n => n).Reconstructed, encoder.Encode(use, w, n => n).Reconstructed);
    }

    [Fact]
    public void OrtKeepsTheWeightPackedWhenConstantFoldingIsOff()
    {
        // ONNX Runtime's constant folding turns the decompression into a dense float initializer at session start (small
        // on disk, full size in memory); with the ConstantFolding optimizer disabled the packed indices stay packed.
        long[] shape = [64, 48];
        var use = new WeightUse("w", shape, [new WeightConsumer("mm", "MatMul", 1)]);
        var w = EncoderTestModels.Gaussian(64 * 48, 2);
        var b = new GraphBuilder(17);
        b.Initializer<float>("w", shape, w);
        b.Input("x", DT.Float, [2, 64]);
        b.Output(b.MatMul("x", "w", "y"), DT.Float);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);
        var enc = new PaletteWeightEncoder(Spec(6, grouped: true, scale: true)).Encode(use, w, editor.UniqueName);
        editor.ReplaceInitializer("w", enc.Nodes, enc.Initializers);
        EncoderTestModels.SetOpset(model, enc.MinimumOpset);

        string path = Path.Combine(Path.GetTempPath(), $"edgediff-palette-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = path })
            {
                options.AddSessionConfigEntry("optimization.disable_specified_optimizers", "ConstantFolding");
                using var session = new InferenceSession(OnnxModel.FromProto(model).ToBytes(), options);
            }
            var optimized = OnnxModel.Load(path).Graph;
            Assert.DoesNotContain(optimized.Initializer, t => t.DataType == (int)DT.Float && t.Dims.Aggregate(1L, (a, d) => a * d) == w.Length);
            Assert.Contains(optimized.Initializer, t => t.Name == enc.Initializers[0].Name && t.DataType == (int)DT.Uint8);
            Assert.Contains(optimized.Node, n => n.OpType == "Gather");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(16)]
    public void BitsOutOfRangeAreRejected(int bits)
    {
        var ex = Assert.Throws<InvalidArgumentException>(() => new PaletteWeightEncoder(Spec(bits, false, false)));
        Assert.Equal("--bits", ex.Argument);
        Assert.Contains("1, 2, 3, 4, 6, 8", ex.Message);
    }

    [Fact]
    public void OtherMethodsAndOneDimensionalChannelsAreRejected()
    {
        Assert.Equal("--method", Assert.Throws<InvalidArgumentException>(() => new PaletteWeightEncoder(new CompressionSpec { Method = CompressionMethod.Prune, Sparsity = 0.5 })).Argument);
        var encoder = new PaletteWeightEncoder(Spec(4, grouped: true, scale: false));
        var list = WeightUse.Standalone("v", 10);
        Assert.NotNull(encoder.CannotEncode(list));
        Assert.Throws<InvalidArgumentException>(() => encoder.Encode(list, new float[10], n => n));
        Assert.Null(new PaletteWeightEncoder(Spec(4, false, false)).CannotEncode(list));
        var use = Use(Layout.Conv);
        var w = new float[use.ElementCount];
        w[3] = float.NaN;
        Assert.Throws<InvalidArgumentException>(() => new PaletteWeightEncoder(Spec(4, false, false)).Encode(use, w, n => n));
    }
}
