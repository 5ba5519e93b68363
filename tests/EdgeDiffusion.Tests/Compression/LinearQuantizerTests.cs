using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using Xunit;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

public class LinearQuantizerTests
{
    // ONNX QuantizeLinear written out: saturate(round_half_even(x / scale) + zp), float32 division.
    private static int OnnxQuantize(float x, float scale, int zp, int qmin, int qmax)
    {
        double q = Math.Round((double)(x / scale), MidpointRounding.ToEven) + zp;
        return (int)Math.Min(Math.Max(q, qmin), qmax);
    }

    // ONNX DequantizeLinear written out: (x - zp) * scale, float32.
    private static float OnnxDequantize(int q, float scale, int zp) => (float)(q - zp) * scale;

    private static float[] Random(int count, int seed)
    {
        var rng = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + i % 5);
        return values;
    }

    private static void AssertValues(QuantizedTensor q, int[] expectedCodes, float expectedScale, int expectedZp, float[] expectedDequantized)
    {
        Assert.Equal(expectedCodes, q.Values);
        Assert.Equal([expectedScale], q.Scales);
        Assert.Equal([expectedZp], q.ZeroPoints);
        Assert.Empty(q.ScaleShape);
        Assert.Equal(expectedDequantized, q.Dequantize());
    }

    [Fact]
    public void Int8SymmetricHandExample()
    {
        // scale = max|w| / 127; 0.5 * 127 = 63.5 rounds to 64 (half to even).
        var q = LinearQuantizer.Quantize([-1f, 0f, 0.5f, 1f], [4], QuantizationSpec.PerTensor(QuantizedType.Int8, symmetric: true));
        float scale = 1f / 127f;
        AssertValues(q, [-127, 0, 64, 127], scale, 0, [-127 * scale, 0f, 64 * scale, 127 * scale]);
        Assert.Equal(64f / 127f, q.Dequantize()[2], 6);
        Assert.Equal(new sbyte[] { -127, 0, 64, 127 }, q.ValuesAsInt8());
    }

    [Fact]
    public void UInt8SymmetricUsesZeroPoint128()
    {
        var q = LinearQuantizer.Quantize([-1f, 0f, 0.5f, 1f], [4], QuantizationSpec.PerTensor(QuantizedType.UInt8, symmetric: true));
        float scale = 1f / 127f;
        AssertValues(q, [1, 128, 192, 255], scale, 128, [-127 * scale, 0f, 64 * scale, 127 * scale]);
        Assert.Equal(new byte[] { 1, 128, 192, 255 }, q.ValuesAsUInt8());
    }

    [Fact]
    public void Int4SymmetricHandExampleRoundsHalfToEven()
    {
        // max|w| = 14, scale = 14 / 7 = 2; w/scale = -3.5, 2.5, 1.5, 0.5, 7 -> -4, 2, 2, 0, 7.
        var q = LinearQuantizer.Quantize([-7f, 5f, 3f, 1f, 14f], [5], QuantizationSpec.PerTensor(QuantizedType.Int4, symmetric: true));
        AssertValues(q, [-4, 2, 2, 0, 7], 2f, 0, [-8f, 4f, 4f, 0f, 14f]);
    }

    [Fact]
    public void UInt4SymmetricUsesZeroPoint8()
    {
        // scale = 14 / 7 = 2, zp = 8: -14 -> -7 + 8 = 1, 5 -> 2.5 -> 2 + 8 = 10, 0 -> 8.
        var q = LinearQuantizer.Quantize([-14f, 5f, 0f], [3], QuantizationSpec.PerTensor(QuantizedType.UInt4, symmetric: true));
        AssertValues(q, [1, 10, 8], 2f, 8, [-14f, 4f, 0f]);
    }

    [Fact]
    public void SymmetricNeverUsesTheMostNegativeCode()
    {
        var q = LinearQuantizer.Quantize([-1f, 1f, -0.999f], [3], QuantizationSpec.PerTensor(QuantizedType.Int8, symmetric: true));
        Assert.Equal([-127, 127, -127], q.Values);
        var q4 = LinearQuantizer.Quantize([-1f, 1f], [2], QuantizationSpec.PerTensor(QuantizedType.Int4, symmetric: true));
        Assert.Equal([-7, 7], q4.Values);
    }

    [Fact]
    public void UInt4AsymmetricHandExample()
    {
        // range [-3, 12], scale = 15 / 15 = 1, zp = round(0 - (-3) / 1) = 3; 1.5 -> 2, 2.5 -> 2 (half to even).
        var q = LinearQuantizer.Quantize([-3f, 0f, 1.5f, 2.5f, 12f], [5], QuantizationSpec.PerTensor(QuantizedType.UInt4, symmetric: false));
        AssertValues(q, [0, 3, 5, 5, 15], 1f, 3, [-3f, 0f, 2f, 2f, 12f]);
    }

    [Fact]
    public void Int4AsymmetricHandExample()
    {
        // range [-8, 7], scale = 15 / 15 = 1, zp = round(-8 - (-8)) = 0; -2.5 -> -2 (half to even).
        var q = LinearQuantizer.Quantize([-8f, -2.5f, 0f, 7f], [4], QuantizationSpec.PerTensor(QuantizedType.Int4, symmetric: false));
        AssertValues(q, [-8, -2, 0, 7], 1f, 0, [-8f, -2f, 0f, 7f]);
    }

    [Fact]
    public void Int8AsymmetricAllPositiveRangeIncludesZero()
    {
        // min = 1 but the range is widened to [0, 255]: scale = 255 / 255 = 1 (not 254 / 255), zp = round(-128 - 0 / 1) = -128.
        var q = LinearQuantizer.Quantize([1f, 2f, 255f], [3], QuantizationSpec.PerTensor(QuantizedType.Int8, symmetric: false));
        AssertValues(q, [-127, -126, 127], 1f, -128, [1f, 2f, 255f]);
    }

    [Fact]
    public void UInt8AsymmetricAllNegativeRangeIncludesZero()
    {
        // range widened to [-255, 0]: scale = 1, zp = round(0 + 255) = 255.
        var q = LinearQuantizer.Quantize([-255f, -10f, -1f], [3], QuantizationSpec.PerTensor(QuantizedType.UInt8, symmetric: false));
        AssertValues(q, [0, 245, 254], 1f, 255, [-255f, -10f, -1f]);
    }

    [Fact]
    public void Int8AsymmetricMatchesOnnxFormulas()
    {
        var w = new[] { -1f, 0f, 0.5f, 1f, 0.3f, -0.7f };
        var q = LinearQuantizer.Quantize(w, [6], QuantizationSpec.PerTensor(QuantizedType.Int8, symmetric: false));
        float scale = 2f / 255f;
        Assert.Equal(scale, q.Scales[0], 7);
        // zp = round(-128 - (-1) / scale): in exact arithmetic -0.5 -> 0, but in float32 (as ONNX computes it)
        // 1 / (2/255f) = 127.49999, so -0.50001 -> -1.
        float zpFloat = -128f - (-1f) / (2f / 255f);
        Assert.True(zpFloat < -0.5f);
        int zp = (int)MathF.Round(zpFloat, MidpointRounding.ToEven);
        Assert.Equal(-1, zp);
        Assert.Equal(zp, q.ZeroPoints[0]);
        for (int i = 0; i < w.Length; i++)
        {
            Assert.Equal(OnnxQuantize(w[i], q.Scales[0], zp, -128, 127), q.Values[i]);
            Assert.Equal(OnnxDequantize(q.Values[i], q.Scales[0], zp), q.Dequantize()[i]);
        }
    }

    [Fact]
    public void PerChannelConvScalesAreRowMaxOver127()
    {
        long[] shape = [4, 3, 2, 2];
        var w = Random(48, 1);
        var q = LinearQuantizer.Quantize(w, shape, QuantizationSpec.PerChannel(QuantizedType.Int8, true, QuantizationSpec.ConvOutputChannelAxis));
        Assert.Equal([4L], q.ScaleShape);
        for (int o = 0; o < 4; o++)
        {
            float max = 0;
            for (int j = 0; j < 12; j++) max = Math.Max(max, Math.Abs(w[o * 12 + j]));
            float scale = max / 127f;
            Assert.Equal(scale, q.Scales[o]);
            Assert.Equal(0, q.ZeroPoints[o]);
            for (int j = 0; j < 12; j++)
            {
                int code = OnnxQuantize(w[o * 12 + j], scale, 0, -127, 127);
                Assert.Equal(code, q.Values[o * 12 + j]);
                Assert.Equal(OnnxDequantize(code, scale, 0), q.Dequantize()[o * 12 + j]);
            }
        }
    }

    [Fact]
    public void PerChannelMatMulAxis1ScalesAreColumnMax()
    {
        // B [K=5, N=3]: one scale per output column.
        var w = Random(15, 2);
        foreach (int axis in new[] { QuantizationSpec.MatMulOutputAxis, -1 })
        {
            var q = LinearQuantizer.Quantize(w, [5, 3], QuantizationSpec.PerChannel(QuantizedType.Int8, true, axis));
            Assert.Equal([3L], q.ScaleShape);
            Assert.Equal(1, q.ResolvedAxis);
            for (int n = 0; n < 3; n++)
            {
                float max = 0;
                for (int k = 0; k < 5; k++) max = Math.Max(max, Math.Abs(w[k * 3 + n]));
                Assert.Equal(max / 127f, q.Scales[n]);
                for (int k = 0; k < 5; k++) Assert.Equal(OnnxQuantize(w[k * 3 + n], max / 127f, 0, -128, 127), q.Values[k * 3 + n]);
            }
        }
    }

    [Fact]
    public void PerChannelAsymmetricScalesAndZeroPoints()
    {
        var w = Random(15, 3);
        var q = LinearQuantizer.Quantize(w, [3, 5], QuantizationSpec.PerChannel(QuantizedType.UInt8, false, 0));
        for (int r = 0; r < 3; r++)
        {
            double min = 0, max = 0;
            for (int j = 0; j < 5; j++) { min = Math.Min(min, w[r * 5 + j]); max = Math.Max(max, w[r * 5 + j]); }
            double scale = (max - min) / 255;
            Assert.Equal(scale, q.Scales[r], scale * 1e-6);
            Assert.Equal(Math.Clamp(MathF.Round(0 - (float)min / q.Scales[r], MidpointRounding.ToEven), 0, 255), q.ZeroPoints[r]);
        }
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(128)]
    public void PerBlockScaleShapeHasCeilBlocksAlongAxis(int block)
    {
        var spec = QuantizationSpec.PerBlock(QuantizedType.Int4, true, 1, block);
        Assert.Equal([2L, (130 + block - 1) / block, 3L], spec.ScaleShape([2, 130, 3]));
        Assert.Equal(new long[] { 3, 3, 4 }, QuantizationSpec.PerBlock(QuantizedType.Int8, true, 0, 32).ScaleShape([70, 3, 4])); // ceil(70 / 32) = 3
        Assert.Equal(new long[] { 2, 3, 4 }, QuantizationSpec.PerBlock(QuantizedType.Int8, true, 0, 64).ScaleShape([70, 3, 4])); // ceil(70 / 64) = 2
        Assert.Equal(new long[] { 3 }, QuantizationSpec.PerChannel(QuantizedType.Int8, true, 1).ScaleShape([70, 3, 4]));
        Assert.Empty(QuantizationSpec.PerTensor(QuantizedType.Int8, true).ScaleShape([70, 3, 4]));
    }

    [Fact]
    public void PerBlockLastBlockIsPartial()
    {
        // [2, 70] blocked along axis 1 by 32: blocks [0,32), [32,64), [64,70) -> scale shape [2, 3].
        var w = Random(140, 4);
        w[1 * 70 + 66] = 9f; // only the partial last block of row 1 sees it
        var q = LinearQuantizer.Quantize(w, [2, 70], QuantizationSpec.PerBlock(QuantizedType.Int8, true, 1, 32));
        Assert.Equal([2L, 3L], q.ScaleShape);
        Assert.Equal(6, q.Scales.Length);
        for (int r = 0; r < 2; r++)
            for (int b = 0; b < 3; b++)
            {
                float max = 0;
                for (int c = b * 32; c < Math.Min(70, (b + 1) * 32); c++) max = Math.Max(max, Math.Abs(w[r * 70 + c]));
                Assert.Equal(max / 127f, q.Scales[r * 3 + b]);
                for (int c = b * 32; c < Math.Min(70, (b + 1) * 32); c++)
                    Assert.Equal(OnnxQuantize(w[r * 70 + c], max / 127f, 0, -128, 127), q.Values[r * 70 + c]);
            }
        Assert.Equal(9f / 127f, q.Scales[1 * 3 + 2]);
        Assert.Equal(127, q.Values[1 * 70 + 66]);
    }

    [Fact]
    public void PerBlockAlongMiddleAxisOf4dTensor()
    {
        // [2, 40, 2, 2] blocked along axis 1 by 32: scale shape [2, 2, 2, 2]; element (o, i, y, x) uses scale (o, i / 32, y, x).
        long[] shape = [2, 40, 2, 2];
        var w = Random(320, 5);
        var q = LinearQuantizer.Quantize(w, shape, QuantizationSpec.PerBlock(QuantizedType.UInt4, false, 1, 32));
        Assert.Equal([2L, 2L, 2L, 2L], q.ScaleShape);
        for (int o = 0; o < 2; o++)
            for (int b = 0; b < 2; b++)
                for (int y = 0; y < 2; y++)
                    for (int x = 0; x < 2; x++)
                    {
                        double min = 0, max = 0;
                        for (int i = b * 32; i < Math.Min(40, b * 32 + 32); i++)
                        {
                            float v = w[((o * 40 + i) * 2 + y) * 2 + x];
                            min = Math.Min(min, v);
                            max = Math.Max(max, v);
                        }
                        int s = ((o * 2 + b) * 2 + y) * 2 + x;
                        Assert.Equal((max - min) / 15, q.Scales[s], 1e-6);
                        int zp = q.ZeroPoints[s];
                        for (int i = b * 32; i < Math.Min(40, b * 32 + 32); i++)
                        {
                            int e = ((o * 40 + i) * 2 + y) * 2 + x;
                            Assert.Equal(OnnxQuantize(w[e], q.Scales[s], zp, 0, 15), q.Values[e]);
                            Assert.Equal(OnnxDequantize(q.Values[e], q.Scales[s], zp), q.Dequantize()[e]);
                        }
                    }
    }

    [Fact]
    public void SnrHandExample()
    {
        // signal 3² + 4² = 25, noise 0² + 1² = 1: 10·log10(25) = 13.9794 dB.
        Assert.Equal(13.97940008672, LinearQuantizer.SnrDb([3f, 4f], [3f, 3f]), 9);
        // signal 1, noise 0.01 -> 20 dB.
        Assert.Equal(20.0, LinearQuantizer.SnrDb([1f, 0f], [1f, 0.1f]), 5);
        Assert.Equal(double.PositiveInfinity, LinearQuantizer.SnrDb([1f, 2f], [1f, 2f]));
        // Integers in [-8, 7] are exact in int4 asymmetric (scale 1, zp 0).
        Assert.Equal(double.PositiveInfinity, LinearQuantizer.SnrDb([-8f, -2f, 0f, 7f], [4], QuantizationSpec.PerTensor(QuantizedType.Int4, false)));
    }

    [Fact]
    public void Int4ErrorIsLargerThanInt8OnTheSameData()
    {
        var w = Random(64 * 96, 6);
        long[] shape = [64, 96];
        foreach (bool symmetric in new[] { true, false })
        {
            double snr8 = LinearQuantizer.SnrDb(w, shape, QuantizationSpec.PerChannel(QuantizedType.Int8, symmetric, 0));
            double snr4 = LinearQuantizer.SnrDb(w, shape, QuantizationSpec.PerChannel(QuantizedType.Int4, symmetric, 0));
            double snr4Block = LinearQuantizer.SnrDb(w, shape, QuantizationSpec.PerBlock(QuantizedType.Int4, symmetric, 1, 32));
            // Each bit is worth about 6 dB: 4 fewer bits, about 24 dB less.
            Assert.True(snr8 > snr4 + 15, $"int8 {snr8:F1} dB, int4 {snr4:F1} dB");
            Assert.True(snr4 > 10, $"int4 {snr4:F1} dB");
            // Smaller groups fit the data better.
            Assert.True(snr4Block >= snr4, $"int4 per-block {snr4Block:F1} dB, per-channel {snr4:F1} dB");
        }
    }

    public static TheoryData<QuantizedType, bool> AllTypes()
    {
        var data = new TheoryData<QuantizedType, bool>();
        foreach (var t in Enum.GetValues<QuantizedType>())
        {
            data.Add(t, true);
            data.Add(t, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void RoundTripErrorIsAtMostHalfAScale(QuantizedType type, bool symmetric)
    {
        var w = Random(3 * 100, 7);
        w[5] = 0f;
        long[] shape = [3, 100];
        foreach (var spec in new[]
                 {
                     QuantizationSpec.PerTensor(type, symmetric),
                     QuantizationSpec.PerChannel(type, symmetric, 0),
                     QuantizationSpec.PerBlock(type, symmetric, 1, 32),
                 })
        {
            var q = LinearQuantizer.Quantize(w, shape, spec);
            var back = q.Dequantize();
            for (int i = 0; i < w.Length; i++)
            {
                int r = i / 100, c = i % 100;
                int g = spec.Granularity switch
                {
                    QuantizationGranularity.PerTensor => 0,
                    QuantizationGranularity.PerChannel => r,
                    _ => r * 4 + c / 32,
                };
                float scale = q.Scales[g];
                Assert.True(Math.Abs(w[i] - back[i]) <= scale / 2 * (1 + 1e-5), $"{spec}: element {i} {w[i]} -> {back[i]}, scale {scale}");
                Assert.InRange(q.Values[i], spec.TypeMin, spec.TypeMax);
            }
            Assert.Equal(0f, back[5]); // zero is exact in every mode
        }
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void AllZeroChannelGetsScaleOneAndStaysZero(QuantizedType type, bool symmetric)
    {
        float[] w = [0f, 0f, 0f, 1f, -2f, 0.5f];
        var q = LinearQuantizer.Quantize(w, [2, 3], QuantizationSpec.PerChannel(type, symmetric, 0));
        Assert.Equal(1f, q.Scales[0]);
        Assert.Equal([0f, 0f, 0f], q.Dequantize()[..3]);
        Assert.All(q.Scales, s => Assert.True(float.IsNormal(s) && s > 0));
    }

    [Fact]
    public void UnderflowingScaleBecomesSmallestNormal()
    {
        var q = LinearQuantizer.Quantize([1e-44f, 0f], [2], QuantizationSpec.PerTensor(QuantizedType.Int8, true));
        Assert.Equal(1.17549435e-38f, q.Scales[0]);
        Assert.Equal([0, 0], q.Values);
    }

    [Fact]
    public void Int4ValuesArePackedTwoPerByte()
    {
        // int4 symmetric [7, -7, 3.5]: scale 7 / 7 = 1, q = [7, -7, 3.5 -> 4]; packed low nibble first:
        // byte 0 = 0x7 | (-7 & 0xF) << 4 = 0x97, byte 1 = 0x4.
        var q = LinearQuantizer.Quantize([7f, -7f, 3.5f], [3], QuantizationSpec.PerTensor(QuantizedType.Int4, true));
        Assert.Equal([7, -7, 4], q.Values);
        var (data, scale, zeroPoint) = q.ToTensorProtos("w");
        Assert.Equal((int)DT.Int4, data.DataType);
        Assert.Equal("w", data.Name);
        Assert.Equal(new byte[] { 0x97, 0x04 }, data.RawData.ToByteArray());
        Assert.Equal([7, -7, 4], TensorData.ReadInt4(data));
        Assert.Equal("w_scale", scale.Name);
        Assert.Empty(scale.Dims);
        Assert.Equal([1f], TensorData.Read<float>(scale));
        Assert.Equal((int)DT.Int4, zeroPoint.DataType);
        Assert.Equal("w_zero_point", zeroPoint.Name);
        Assert.Equal([0], TensorData.ReadInt4(zeroPoint));
    }

    [Fact]
    public void TensorProtosHaveDequantizeLinearShapes()
    {
        var w = Random(2 * 70, 8);
        var blocked = LinearQuantizer.Quantize(w, [2, 70], QuantizationSpec.PerBlock(QuantizedType.UInt4, false, 1, 32));
        var (data, scale, zp) = blocked.ToTensorProtos("b");
        Assert.Equal((int)DT.Uint4, data.DataType);
        Assert.Equal([2L, 70L], data.Dims);
        Assert.Equal(70, data.RawData.Length); // 140 values, two per byte
        Assert.Equal(blocked.Values, TensorData.ReadInt4(data));
        Assert.Equal([2L, 3L], scale.Dims);
        Assert.Equal(blocked.Scales, TensorData.Read<float>(scale));
        Assert.Equal((int)DT.Uint4, zp.DataType);
        Assert.Equal([2L, 3L], zp.Dims);
        Assert.Equal(blocked.ZeroPoints, TensorData.ReadInt4(zp));

        var channel = LinearQuantizer.Quantize(w, [2, 70], QuantizationSpec.PerChannel(QuantizedType.Int8, true, 0));
        (data, scale, zp) = channel.ToTensorProtos("c");
        Assert.Equal((int)DT.Int8, data.DataType);
        Assert.Equal(channel.Values, Array.ConvertAll(TensorData.Read<sbyte>(data), v => (int)v));
        Assert.Equal([2L], scale.Dims);
        Assert.Equal([2L], zp.Dims);
        Assert.Equal((int)DT.Int8, zp.DataType);

        var tensor = LinearQuantizer.Quantize(w, [2, 70], QuantizationSpec.PerTensor(QuantizedType.UInt8, false));
        (data, scale, zp) = tensor.ToTensorProtos("t");
        Assert.Equal((int)DT.Uint8, data.DataType);
        Assert.Equal(tensor.Values, Array.ConvertAll(TensorData.Read<byte>(data), v => (int)v));
        Assert.Empty(scale.Dims);
        Assert.Empty(zp.Dims);
        Assert.Equal(tensor.ZeroPoints[0], TensorData.Read<byte>(zp)[0]);
    }

    [Fact]
    public void BadInputsAreTypedErrors()
    {
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.Quantize([float.NaN], [1], QuantizationSpec.PerTensor(QuantizedType.Int8, true)));
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.Quantize([float.PositiveInfinity], [1], QuantizationSpec.PerTensor(QuantizedType.Int8, true)));
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.Quantize([1f, 2f], [3], QuantizationSpec.PerTensor(QuantizedType.Int8, true)));
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.Quantize([1f, 2f], [1, 2], QuantizationSpec.PerChannel(QuantizedType.Int8, true, 2)));
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.Quantize([1f, 2f], [1, 2], QuantizationSpec.PerChannel(QuantizedType.Int8, true, -3)));
        Assert.Throws<InvalidArgumentException>(() => QuantizationSpec.PerBlock(QuantizedType.Int4, true, 0, 16));
        Assert.Throws<InvalidArgumentException>(() => LinearQuantizer.SnrDb([1f], [1f, 2f]));
    }
}
