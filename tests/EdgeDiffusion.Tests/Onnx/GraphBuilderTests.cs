using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Onnx;

public class GraphBuilderTests
{
    // ------------------------------------------------------------ model metadata and naming

    [Theory]
    [InlineData(17, 8)]
    [InlineData(18, 8)]
    [InlineData(19, 9)]
    [InlineData(20, 9)]
    [InlineData(21, 10)]
    [InlineData(22, 10)]
    [InlineData(23, 11)]
    public void Build_WritesIrVersionOpsetAndProducer(int opset, long ir)
    {
        var b = new GraphBuilder(opset);
        var x = b.Input("x", DT.Float, [2]);
        b.Output(b.Neg(x, "y"), DT.Float, [2]);
        var model = b.Build();

        Assert.Equal(ir, model.IrVersion);
        Assert.Equal("EdgeDiffusion", model.ProducerName);
        var import = Assert.Single(model.OpsetImport);
        Assert.Equal("", import.Domain);
        Assert.Equal(opset, import.Version);
        var y = Run(model, new Feed("x", [2], new float[] { 1.5f, -2f }))["y"];
        Assert.Equal([-1.5, 2.0], y.Values);
    }

    [Fact]
    public void Build_OpsetOutsideSupportedRangeThrows()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GraphBuilder(16));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GraphBuilder(24));
    }

    [Fact]
    public void Build_ImportedDomainsAreListed()
    {
        var b = new GraphBuilder();
        Assert.Throws<ArgumentException>(() => b.Node("FastGelu", [b.Input("x", DT.Float, [1])], domain: "com.microsoft"));
        b.ImportOpset("com.microsoft", 1);
        b.Output(b.Node("FastGelu", ["x"], domain: "com.microsoft")[0], DT.Float);
        var model = b.Build();
        Assert.Contains(model.OpsetImport, o => o.Domain == "com.microsoft" && o.Version == 1);
        Assert.Equal("com.microsoft", model.Graph.Node.Single().Domain);
    }

    [Fact]
    public void Scope_PrefixesNodeNamesAndNamesParametersExactly()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", DT.Float, [1, 2, 4, 4]);
        string w1, w2, h;
        using (b.Scope("down_blocks.0"))
        using (b.Scope("resnets.0"))
        {
            w1 = b.Random(b.Name("conv1.weight"), [2, 2, 3, 3], 0.1f);
            w2 = b.Random(b.Name("conv2.weight"), [2, 2, 3, 3], 0.1f);
            h = b.Conv(x, w1, pads: [1, 1, 1, 1]);
            h = b.Conv(h, w2, pads: [1, 1, 1, 1]);
            Assert.Equal("down_blocks.0.resnets.0", b.ScopePath);
        }
        Assert.Equal("", b.ScopePath);
        var top = b.Random("conv_out.weight", [2, 2, 1, 1], 0.1f);
        var y = b.Conv(h, top);
        b.Output(y, DT.Float);
        var model = b.Build();

        Assert.Equal("down_blocks.0.resnets.0.conv1.weight", w1);
        Assert.Equal("down_blocks.0.resnets.0.conv2.weight", w2);
        Assert.Equal(["down_blocks.0.resnets.0.conv1.weight", "down_blocks.0.resnets.0.conv2.weight", "conv_out.weight"],
            model.Graph.Initializer.Select(t => t.Name));
        var conv = model.Graph.Node.Where(n => n.OpType == "Conv").Select(n => n.Name).ToArray();
        Assert.Equal(["down_blocks.0.resnets.0/Conv", "down_blocks.0.resnets.0/Conv_1", "Conv"], conv);
        Assert.Equal("Conv_output_0", y);
        Assert.Equal([1, 2, 4, 4], Run(model, new Feed("x", [1, 2, 4, 4], RandomFloats(32, 1)))[y].Shape);
    }

    [Fact]
    public void Names_AreUniqueAcrossNodesAndValuesAndExplicitNamesAreKept()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", DT.Float, [3]);
        var a = x;
        for (int i = 0; i < 50; i++) a = b.Add(a, b.Constant(1f));
        var named = b.Neg(a, output: "Add_output_0_1");
        var after = b.Add(named, x);
        b.Output(after, DT.Float);
        var model = b.Build();

        var nodeNames = model.Graph.Node.Select(n => n.Name).ToList();
        Assert.Equal(nodeNames.Count, nodeNames.Distinct().Count());
        var values = model.Graph.Node.SelectMany(n => n.Output).Concat(model.Graph.Input.Select(i => i.Name)).ToList();
        Assert.Equal(values.Count, values.Distinct().Count());
        Assert.Equal("Add_output_0_1", named);
        var y = Run(model, new Feed("x", [3], new float[] { 1, 2, 3 }))[after];
        Assert.Equal([-50.0, -50.0, -50.0], y.Values);
    }

    [Fact]
    public void Misuse_IsReportedAtTheCall()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", DT.Float, [2]);
        Assert.Throws<ArgumentException>(() => b.Input("x", DT.Float, [2]));
        Assert.Throws<ArgumentException>(() => b.Add(x, "typo"));
        Assert.Throws<ArgumentException>(() => b.Initializer<float>("w", [3], [1f, 2f]));
        b.Initializer<float>("w", [2], [1f, 2f]);
        Assert.Throws<ArgumentException>(() => b.Initializer<float>("w", [2], [1f, 2f]));
        Assert.Throws<ArgumentException>(() => b.Neg(x, output: "w"));
        Assert.Throws<InvalidOperationException>(() => b.DequantizeLinear(x, "w", blockSize: 2));
        Assert.Throws<InvalidOperationException>(() => b.Build());
        var outer = b.Scope("outer");
        var inner = b.Scope("inner");
        Assert.Throws<InvalidOperationException>(() => outer.Dispose());
        inner.Dispose();
        outer.Dispose();
        b.Output(b.Add(x, "w"), DT.Float);
        b.Build();
        Assert.Throws<InvalidOperationException>(() => b.Neg(x));
    }

    [Fact]
    public void Input_SymbolicDimensionsAreWritten()
    {
        var b = new GraphBuilder();
        b.Input("sample", DT.Float16, ["batch", 4, "height", "width"]);
        b.Input("anything", DT.Int64, null);
        b.Output(b.Identity("sample", "out"), DT.Float16, ["batch", 4, Dim.Unknown, "width"]);
        var g = b.Build().Graph;
        var dims = g.Input[0].Type.TensorType.Shape.Dim;
        Assert.Equal((int)DT.Float16, g.Input[0].Type.TensorType.ElemType);
        Assert.Equal("batch", dims[0].DimParam);
        Assert.Equal(4, dims[1].DimValue);
        Assert.Equal("width", dims[3].DimParam);
        Assert.Null(g.Input[1].Type.TensorType.Shape);
        var outDims = g.Output[0].Type.TensorType.Shape.Dim;
        Assert.Equal(TensorShapeProto.Types.Dimension.ValueOneofCase.None, outDims[2].ValueCase);
    }

    // ------------------------------------------------------------ convolution and linear algebra

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(2, 1, 1, 1)]
    [InlineData(1, 0, 1, 2)]
    [InlineData(2, 1, 1, 4)]
    [InlineData(1, 2, 2, 1)]
    public void Conv_MatchesNaiveConvolution(int stride, int pad, int dilation, int group)
    {
        const int N = 2, C = 4, H = 7, W = 6, M = 8, K = 3;
        var x = RandomFloats(N * C * H * W, 10);
        var w = RandomFloats(M * (C / group) * K * K, 11);
        var bias = RandomFloats(M, 12);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [N, C, H, W]);
        b.Initializer<float>("conv.weight", [M, C / group, K, K], w);
        b.Initializer<float>("conv.bias", [M], bias);
        b.Output(b.Conv("x", "conv.weight", "conv.bias", strides: [stride, stride], pads: [pad, pad, pad, pad],
            dilations: [dilation, dilation], group: group, output: "y"), DT.Float);

        var y = Run(b.Build(), new Feed("x", [N, C, H, W], x))["y"];
        var expected = NaiveConv2d(x, N, C, H, W, w, M, K, bias, stride, pad, dilation, group, out int oh, out int ow);
        Assert.Equal([N, M, oh, ow], y.Shape);
        AssertClose(expected, y.Values, 1e-4);
    }

    private static double[] NaiveConv2d(float[] x, int n, int c, int h, int w, float[] wt, int m, int k, float[] bias,
        int stride, int pad, int dil, int group, out int oh, out int ow)
    {
        oh = (h + 2 * pad - dil * (k - 1) - 1) / stride + 1;
        ow = (w + 2 * pad - dil * (k - 1) - 1) / stride + 1;
        int cg = c / group, mg = m / group;
        var y = new double[n * m * oh * ow];
        for (int b = 0; b < n; b++)
        for (int oc = 0; oc < m; oc++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            double s = bias[oc];
            int g = oc / mg;
            for (int icg = 0; icg < cg; icg++)
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                int iy = oy * stride - pad + ky * dil, ix = ox * stride - pad + kx * dil;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                int ic = g * cg + icg;
                s += (double)x[((b * c + ic) * h + iy) * w + ix] * wt[((oc * cg + icg) * k + ky) * k + kx];
            }
            y[((b * m + oc) * oh + oy) * ow + ox] = s;
        }
        return y;
    }

    [Fact]
    public void MatMul_BatchedTimesMatrix()
    {
        const int B = 2, R = 3, I = 4, J = 5;
        var a = RandomFloats(B * R * I, 20);
        var w = RandomFloats(I * J, 21);
        var b = new GraphBuilder();
        b.Input("a", DT.Float, ["batch", R, I]);
        b.Initializer<float>("w", [I, J], w);
        b.Output(b.MatMul("a", "w", "y"), DT.Float);
        var y = Run(b.Build(), new Feed("a", [B, R, I], a))["y"];

        var expected = new double[B * R * J];
        for (int bb = 0; bb < B; bb++)
        for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++)
            for (int i = 0; i < I; i++) expected[(bb * R + r) * J + j] += (double)a[(bb * R + r) * I + i] * w[i * J + j];
        Assert.Equal([B, R, J], y.Shape);
        AssertClose(expected, y.Values);
    }

    [Fact]
    public void Gemm_TransBAlphaBeta()
    {
        const int M = 3, K = 4, N = 5;
        const float alpha = 0.5f, beta = 2f;
        var a = RandomFloats(M * K, 30);
        var w = RandomFloats(N * K, 31);
        var c = RandomFloats(N, 32);
        var b = new GraphBuilder();
        b.Input("a", DT.Float, [M, K]);
        b.Initializer<float>("w", [N, K], w);
        b.Initializer<float>("c", [N], c);
        b.Output(b.Gemm("a", "w", "c", alpha, beta, transB: true, output: "y"), DT.Float);
        var y = Run(b.Build(), new Feed("a", [M, K], a))["y"];

        var expected = new double[M * N];
        for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
        {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)a[i * K + k] * w[j * K + k];
            expected[i * N + j] = alpha * s + beta * c[j];
        }
        AssertClose(expected, y.Values);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void Softmax_AlongAxis(int axis)
    {
        int[] shape = [2, 3, 5];
        var x = RandomFloats(30, 40, 4f);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [2, 3, 5]);
        b.Output(b.Softmax("x", axis, "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [2, 3, 5], x))["y"];

        int ax = axis < 0 ? axis + 3 : axis;
        int stride = ax == 2 ? 1 : 5, len = shape[ax];
        var expected = new double[30];
        for (int i = 0; i < 30; i++)
        {
            int pos = i / stride % len, start = i - pos * stride;
            double max = double.NegativeInfinity, sum = 0;
            for (int t = 0; t < len; t++) max = Math.Max(max, x[start + t * stride]);
            for (int t = 0; t < len; t++) sum += Math.Exp(x[start + t * stride] - max);
            expected[i] = Math.Exp(x[i] - max) / sum;
        }
        AssertClose(expected, y.Values, 1e-6);
    }

    [Fact]
    public void Einsum_MatchesContraction()
    {
        var q = RandomFloats(2 * 3 * 4, 50);
        var k = RandomFloats(2 * 5 * 4, 51);
        var b = new GraphBuilder();
        b.Input("q", DT.Float, [2, 3, 4]);
        b.Input("k", DT.Float, [2, 5, 4]);
        b.Output(b.Einsum("bid,bjd->bij", ["q", "k"], "s"), DT.Float);
        var s = Run(b.Build(), new Feed("q", [2, 3, 4], q), new Feed("k", [2, 5, 4], k))["s"];
        var expected = new double[2 * 3 * 5];
        for (int bb = 0; bb < 2; bb++)
        for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++)
            for (int d = 0; d < 4; d++) expected[(bb * 3 + i) * 5 + j] += (double)q[(bb * 3 + i) * 4 + d] * k[(bb * 5 + j) * 4 + d];
        AssertClose(expected, s.Values);
    }

    // ------------------------------------------------------------ normalization

    [Fact]
    public void LayerNormalization_LastAxis()
    {
        const int Rows = 6, D = 8;
        const float eps = 1e-5f;
        var x = RandomFloats(Rows * D, 60, 3f);
        var scale = RandomFloats(D, 61);
        var bias = RandomFloats(D, 62);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [2, 3, D]);
        b.Initializer<float>("ln.weight", [D], scale);
        b.Initializer<float>("ln.bias", [D], bias);
        b.Output(b.LayerNormalization("x", "ln.weight", "ln.bias", epsilon: eps, output: "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [2, 3, D], x))["y"];

        var expected = new double[Rows * D];
        for (int r = 0; r < Rows; r++)
        {
            double mean = 0, var = 0;
            for (int d = 0; d < D; d++) mean += x[r * D + d];
            mean /= D;
            for (int d = 0; d < D; d++) var += Math.Pow(x[r * D + d] - mean, 2);
            var /= D;
            for (int d = 0; d < D; d++) expected[r * D + d] = (x[r * D + d] - mean) / Math.Sqrt(var + eps) * scale[d] + bias[d];
        }
        AssertClose(expected, y.Values, 1e-4);
    }

    [Fact]
    public void InstanceNormalization_PerChannel()
    {
        const int N = 2, C = 3, L = 10;
        var x = RandomFloats(N * C * L, 65, 2f);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [N, C, L]);
        b.Initializer<float>("s", [C], [1f, 2f, 0.5f]);
        b.Initializer<float>("t", [C], [0f, -1f, 3f]);
        b.Output(b.InstanceNormalization("x", "s", "t", 1e-5f, "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [N, C, L], x))["y"];
        float[] s = [1f, 2f, 0.5f], t = [0f, -1f, 3f];
        var expected = new double[N * C * L];
        for (int nc = 0; nc < N * C; nc++)
        {
            var slice = x.Skip(nc * L).Take(L).Select(v => (double)v).ToArray();
            double mean = slice.Average(), var = slice.Select(v => (v - mean) * (v - mean)).Average();
            for (int i = 0; i < L; i++) expected[nc * L + i] = (slice[i] - mean) / Math.Sqrt(var + 1e-5) * s[nc % C] + t[nc % C];
        }
        AssertClose(expected, y.Values, 1e-4);
    }

    [Theory]
    [InlineData(2, 8, 8, 1e-6f)]
    [InlineData(1, 4, 6, 1e-5f)]
    public void GroupNorm_DecompositionMatchesFormulaWith32Groups(int n, int h, int w, float eps)
    {
        const int C = 64, G = 32;
        var x = RandomFloats(n * C * h * w, 70 + h, 3f);
        for (int i = 0; i < x.Length; i++) x[i] += i % 7; // non-zero group means
        var gamma = RandomFloats(C, 71);
        var beta = RandomFloats(C, 72);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, ["batch", C, "height", "width"]);
        b.Initializer<float>("norm1.weight", [C], gamma);
        b.Initializer<float>("norm1.bias", [C], beta);
        b.Output(b.GroupNorm("x", "norm1.weight", "norm1.bias", G, eps, output: "y"), DT.Float);
        var model = b.Build();
        Assert.DoesNotContain(model.Graph.Node, node => node.OpType == "GroupNormalization");

        var y = Run(model, new Feed("x", [n, C, h, w], x))["y"];
        Assert.Equal([n, C, h, w], y.Shape);
        int per = C / G * h * w;
        var expected = new double[x.Length];
        for (int bg = 0; bg < n * G; bg++)
        {
            int start = bg * per;
            double mean = 0, var = 0;
            for (int i = 0; i < per; i++) mean += x[start + i];
            mean /= per;
            for (int i = 0; i < per; i++) var += Math.Pow(x[start + i] - mean, 2);
            var /= per;
            for (int i = 0; i < per; i++)
            {
                int channel = (start + i) / (h * w) % C;
                expected[start + i] = (x[start + i] - mean) / Math.Sqrt(var + eps) * gamma[channel] + beta[channel];
            }
        }
        AssertClose(expected, y.Values, 2e-4, 1e-4);
    }

    [Fact]
    public void GroupNorm_WithoutAffineIsPlainNormalization()
    {
        var x = RandomFloats(1 * 4 * 3, 75);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [1, 4, 3]);
        b.Output(b.GroupNorm("x", null, null, groups: 2, epsilon: 0f, spatialRank: 1, output: "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [1, 4, 3], x))["y"];
        for (int g = 0; g < 2; g++)
        {
            var part = y.Values.Skip(g * 6).Take(6).ToArray();
            Assert.Equal(0, part.Average(), 5);
            Assert.Equal(1, part.Select(v => v * v).Average(), 3);
        }
    }

    // ------------------------------------------------------------ resampling

    [Fact]
    public void UpsampleNearest_DoublesEveryPixel()
    {
        var x = RandomFloats(2 * 3 * 4, 80);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [1, 2, 3, 4]);
        b.Output(b.UpsampleNearest("x", output: "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [1, 2, 3, 4], x))["y"];
        Assert.Equal([1, 2, 6, 8], y.Shape);
        for (int c = 0; c < 2; c++)
        for (int i = 0; i < 6; i++)
        for (int j = 0; j < 8; j++)
            Assert.Equal(x[(c * 3 + i / 2) * 4 + j / 2], y.Values[(c * 6 + i) * 8 + j]);
    }

    // ------------------------------------------------------------ quantization

    [Fact]
    public void DequantizeLinear_PerAxisInt8()
    {
        const int Rows = 4, Cols = 3;
        sbyte[] q = [-128, -5, 0, 1, 2, 3, 127, 100, -100, 7, -7, 0];
        float[] scale = [0.5f, 0.01f, 2f, 0.125f];
        sbyte[] zp = [0, -3, 10, -128];
        var b = new GraphBuilder();
        b.Initializer<sbyte>("q", [Rows, Cols], q);
        b.Initializer<float>("scale", [Rows], scale);
        b.Initializer<sbyte>("zp", [Rows], zp);
        b.Input("x", DT.Float, [Rows, Cols]);
        b.Output(b.Add("x", b.DequantizeLinear("q", "scale", "zp", axis: 0), "y"), DT.Float);
        var y = Run(b.Build(), new Feed("x", [Rows, Cols], new float[Rows * Cols]))["y"];

        var expected = new double[Rows * Cols];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Cols; c++) expected[r * Cols + c] = scale[r] * (q[r * Cols + c] - zp[r]);
        AssertClose(expected, y.Values, 0);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DequantizeLinear_BlockedInt4Opset21(bool signed)
    {
        const int Rows = 3, Cols = 10, Block = 4, Blocks = 3; // ceil(10 / 4): the last block is partial
        var random = new Random(90);
        int lo = signed ? -8 : 0, hi = signed ? 8 : 16;
        var q = Enumerable.Range(0, Rows * Cols).Select(_ => random.Next(lo, hi)).ToArray();
        var zp = Enumerable.Range(0, Rows * Blocks).Select(_ => random.Next(lo, hi)).ToArray();
        var scale = RandomFloats(Rows * Blocks, 91).Select(v => Math.Abs(v) + 0.01f).ToArray();
        var b = new GraphBuilder(21);
        b.InitializerInt4("w.q", [Rows, Cols], q, signed);
        b.Initializer<float>("w.scale", [Rows, Blocks], scale);
        b.InitializerInt4("w.zp", [Rows, Blocks], zp, signed);
        b.Input("x", DT.Float, [Rows, Cols]);
        b.Output(b.Add("x", b.DequantizeLinear("w.q", "w.scale", "w.zp", axis: 1, blockSize: Block), "y"), DT.Float);
        var model = b.Build();
        Assert.Equal(10, model.IrVersion);
        var y = Run(model, new Feed("x", [Rows, Cols], new float[Rows * Cols]))["y"];

        var expected = new double[Rows * Cols];
        for (int r = 0; r < Rows; r++)
        for (int c = 0; c < Cols; c++)
        {
            int blk = r * Blocks + c / Block;
            expected[r * Cols + c] = scale[blk] * (q[r * Cols + c] - zp[blk]);
        }
        AssertClose(expected, y.Values, 1e-6);
    }

    [Fact]
    public void QuantizeLinear_RoundsHalfToEvenAndSaturates()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [6]);
        b.Initializer<float>("s", [], [0.5f]);
        b.Initializer<sbyte>("z", [], [1]);
        b.Output(b.QuantizeLinear("x", "s", "z", output: "q"), DT.Int8);
        var q = Run(b.Build(), new Feed("x", [6], new float[] { 0.25f, 0.75f, -1f, 100f, -100f, 1.1f }))["q"];
        // round(x / 0.5) + 1: 0.5 -> 0, 1.5 -> 2, -2, 200 -> 127, -200 -> -128, 2.2 -> 2
        Assert.Equal([1.0, 3.0, -1.0, 127.0, -128.0, 3.0], q.Values);
    }

    // ------------------------------------------------------------ activations and elementwise math

    [Fact]
    public void SiLUAndGelu_MatchFormulas()
    {
        var x = Enumerable.Range(0, 81).Select(i => -4f + i * 0.1f).ToArray();
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [x.Length]);
        b.Output(b.SiLU("x", "silu"), DT.Float);
        b.Output(b.Gelu("x", output: "gelu"), DT.Float);
        b.Output(b.Gelu("x", GeluApproximation.Tanh, output: "gelu_tanh"), DT.Float);
        var r = Run(b.Build(), new Feed("x", [x.Length], x));

        AssertClose(x.Select(v => v / (1 + Math.Exp(-v))).ToArray(), r["silu"].Values, 1e-6);
        AssertClose(x.Select(v => 0.5 * v * (1 + ReferenceErf(v / Math.Sqrt(2)))).ToArray(), r["gelu"].Values, 1e-5);
        AssertClose(x.Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray(),
            r["gelu_tanh"].Values, 1e-5);
    }

    [Fact]
    public void Gelu_ErfFormIsFusedByOnnxRuntime()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, ["n", 8]);
        b.Output(b.Gelu("x", output: "y"), DT.Float);
        string dir = TestData.NewTempDir();
        try
        {
            string optimized = Path.Combine(dir, "optimized.onnx");
            using (var options = new Microsoft.ML.OnnxRuntime.SessionOptions { OptimizedModelFilePath = optimized })
            using (new Microsoft.ML.OnnxRuntime.InferenceSession(Bytes(b.Build()), options)) { }
            var ops = ModelProto.Parser.ParseFrom(File.ReadAllBytes(optimized)).Graph.Node.Select(n => n.OpType).ToArray();
            Assert.Equal(["Gelu"], ops);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>erf by its Maclaurin series in double precision (accurate to ~1e-10 for |x| ≤ 4).</summary>
    private static double ReferenceErf(double x)
    {
        double sum = 0, power = x; // x^(2n+1) / n!
        for (int n = 0; n < 200; n++)
        {
            double term = power / (2 * n + 1);
            sum += n % 2 == 0 ? term : -term;
            if (Math.Abs(term) < 1e-17 && n > 5) break;
            power *= x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Fact]
    public void ReferenceErf_KnownValues()
    {
        Assert.Equal(0.8427007929497149, ReferenceErf(1), 12);
        Assert.Equal(-0.9953222650189527, ReferenceErf(-2), 12);
        Assert.Equal(0.9999999845827421, ReferenceErf(4), 9);
    }

    [Fact]
    public void ElementwiseOperators_MatchMath()
    {
        var x = RandomFloats(12, 100, 2f);
        var pos = x.Select(v => Math.Abs(v) + 0.1f).ToArray();
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3, 4]);
        b.Input("p", DT.Float, [3, 4]);
        var two = b.Constant(2f);
        var row = b.Constant([1f, -2f, 3f, 0.5f]);
        b.Output(b.Add("x", row, "add"), DT.Float);
        b.Output(b.Sub("x", row, "sub"), DT.Float);
        b.Output(b.Mul("x", two, "mul"), DT.Float);
        b.Output(b.Div("x", row, "div"), DT.Float);
        b.Output(b.Pow("p", b.Constant(1.5f), "pow"), DT.Float);
        b.Output(b.Sqrt("p", "sqrt"), DT.Float);
        b.Output(b.Exp("x", "exp"), DT.Float);
        b.Output(b.Neg("x", "neg"), DT.Float);
        b.Output(b.Sin("x", "sin"), DT.Float);
        b.Output(b.Cos("x", "cos"), DT.Float);
        b.Output(b.Tanh("x", "tanh"), DT.Float);
        b.Output(b.Sigmoid("x", "sigmoid"), DT.Float);
        b.Output(b.Erf("x", "erf"), DT.Float);
        b.Output(b.Identity("x", "identity"), DT.Float);
        b.Output(b.Unary("Abs", "x", "abs"), DT.Float);
        var r = Run(b.Build(), new Feed("x", [3, 4], x), new Feed("p", [3, 4], pos));

        double[] rowValues = [1, -2, 3, 0.5];
        double[] Map(Func<int, double> f) => Enumerable.Range(0, 12).Select(f).ToArray();
        AssertClose(Map(i => x[i] + rowValues[i % 4]), r["add"].Values);
        AssertClose(Map(i => x[i] - rowValues[i % 4]), r["sub"].Values);
        AssertClose(Map(i => x[i] * 2.0), r["mul"].Values);
        AssertClose(Map(i => x[i] / rowValues[i % 4]), r["div"].Values);
        AssertClose(Map(i => Math.Pow(pos[i], 1.5)), r["pow"].Values);
        AssertClose(Map(i => Math.Sqrt(pos[i])), r["sqrt"].Values);
        AssertClose(Map(i => Math.Exp(x[i])), r["exp"].Values);
        AssertClose(Map(i => -x[i]), r["neg"].Values);
        AssertClose(Map(i => Math.Sin(x[i])), r["sin"].Values);
        AssertClose(Map(i => Math.Cos(x[i])), r["cos"].Values);
        AssertClose(Map(i => Math.Tanh(x[i])), r["tanh"].Values);
        AssertClose(Map(i => 1 / (1 + Math.Exp(-x[i]))), r["sigmoid"].Values);
        AssertClose(Map(i => ReferenceErf(x[i])), r["erf"].Values);
        AssertClose(Map(i => x[i]), r["identity"].Values, 0);
        AssertClose(Map(i => Math.Abs(x[i])), r["abs"].Values, 0);
    }

    // ------------------------------------------------------------ shapes, indexing, reductions

    [Theory]
    [InlineData(17)]
    [InlineData(18)]
    [InlineData(21)]
    public void ShapeOperators_MatchIndexArithmetic(int opset)
    {
        // x[i, j, k] = 100i + 10j + k over [2, 3, 4]
        var x = new float[24];
        for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) x[(i * 3 + j) * 4 + k] = 100 * i + 10 * j + k;
        double X(int i, int j, int k) => 100 * i + 10 * j + k;
        var b = new GraphBuilder(opset);
        b.Input("x", DT.Float, ["batch", 3, 4]);
        b.Output(b.Reshape("x", [0, -1], output: "reshape"), DT.Float);
        b.Output(b.Transpose("x", [2, 0, 1], "transpose"), DT.Float);
        b.Output(b.Concat(["x", "x"], 1, "concat"), DT.Float);
        var parts = b.Split("x", 2, [1, 3], ["split_a", "split_b"]);
        b.Output(parts[0], DT.Float);
        b.Output(parts[1], DT.Float);
        var halves = b.Split("x", 2, 2, ["half_a", "half_b"]);
        b.Output(halves[1], DT.Float);
        b.Output(b.Slice("x", [0, 3], [1, -100], [1, 2], [1, -2], "slice"), DT.Float);
        b.Output(b.Gather("x", b.Constant([2L, 0L]), 1, "gather"), DT.Float);
        b.Output(b.Unsqueeze("x", [0, 3], "unsqueeze"), DT.Float);
        b.Output(b.Squeeze(b.Unsqueeze("x", [1]), [1], "squeeze"), DT.Float);
        b.Output(b.Expand(b.Constant([1f, 2f]), [3, 2], "expand"), DT.Float);
        b.Output(b.Shape("x", output: "shape"), DT.Int64);
        b.Output(b.Shape("x", 1, 3, "shape_tail"), DT.Int64);
        b.Output(b.ReduceMean("x", [2], output: "mean"), DT.Float);
        b.Output(b.ReduceSum("x", [0, 2], keepDims: false, output: "sum"), DT.Float);
        b.Output(b.Cast("x", DT.Int64, "cast"), DT.Int64);
        b.Output(b.Range(b.Constant(1L), b.Constant(10L), b.Constant(3L), "range"), DT.Int64);
        var isBig = b.Node("Greater", ["x", b.Constant(50f)])[0];
        b.Output(b.Where(isBig, "x", b.Neg("x"), "where"), DT.Float);
        var r = Run(b.Build(), new Feed("x", [2, 3, 4], x));

        Assert.Equal([2, 12], r["reshape"].Shape);
        Assert.Equal(x.Select(v => (double)v), r["reshape"].Values);
        Assert.Equal([4, 2, 3], r["transpose"].Shape);
        Assert.Equal(From(4, 2, 3, (k, i, j) => X(i, j, k)), r["transpose"].Values);
        Assert.Equal([2, 6, 4], r["concat"].Shape);
        Assert.Equal(From(2, 6, 4, (i, j, k) => X(i, j % 3, k)), r["concat"].Values);
        Assert.Equal(From(2, 3, 1, (i, j, k) => X(i, j, k)), r["split_a"].Values);
        Assert.Equal(From(2, 3, 3, (i, j, k) => X(i, j, k + 1)), r["split_b"].Values);
        Assert.Equal(From(2, 3, 2, (i, j, k) => X(i, j, k + 2)), r["half_b"].Values);
        Assert.Equal([2, 1, 2], r["slice"].Shape); // axis 1: [0, 1); axis 2: 3 down to past the start by -2
        Assert.Equal(From(2, 1, 2, (i, j, k) => X(i, j, 3 - 2 * k)), r["slice"].Values);
        Assert.Equal(From(2, 2, 4, (i, j, k) => X(i, j == 0 ? 2 : 0, k)), r["gather"].Values);
        Assert.Equal([1, 2, 3, 1, 4], r["unsqueeze"].Shape);
        Assert.Equal([2, 3, 4], r["squeeze"].Shape);
        Assert.Equal([1.0, 2, 1, 2, 1, 2], r["expand"].Values);
        Assert.Equal([2.0, 3, 4], r["shape"].Values);
        Assert.Equal([3.0, 4], r["shape_tail"].Values);
        Assert.Equal([2, 3, 1], r["mean"].Shape);
        Assert.Equal(From(2, 3, 1, (i, j, _) => X(i, j, 0) + 1.5), r["mean"].Values);
        Assert.Equal([3], r["sum"].Shape);
        Assert.Equal(Enumerable.Range(0, 3).Select(j => Enumerable.Range(0, 2).Sum(i => Enumerable.Range(0, 4).Sum(k => X(i, j, k)))), r["sum"].Values);
        Assert.Equal(x.Select(v => (double)v), r["cast"].Values);
        Assert.Equal([1.0, 4, 7], r["range"].Values);
        Assert.Equal(x.Select(v => v > 50 ? (double)v : -v), r["where"].Values);
    }

    private static double[] From(int a, int b, int c, Func<int, int, int, double> f)
    {
        var values = new double[a * b * c];
        for (int i = 0; i < a; i++) for (int j = 0; j < b; j++) for (int k = 0; k < c; k++) values[(i * b + j) * c + k] = f(i, j, k);
        return values;
    }

    [Theory]
    [InlineData(17)]
    [InlineData(18)]
    public void OpsetDependentEncodings(int opset)
    {
        var b = new GraphBuilder(opset);
        b.Input("x", DT.Float, [2, 4]);
        b.Output(b.ReduceMean("x", [1], output: "m"), DT.Float);
        var parts = b.Split("x", 1, 2);
        b.Output(parts[0], DT.Float);
        var g = b.Build().Graph;
        var reduce = g.Node.Single(n => n.OpType == "ReduceMean");
        var split = g.Node.Single(n => n.OpType == "Split");
        if (opset < 18)
        {
            Assert.Single(reduce.Input);
            Assert.Contains(reduce.Attribute, a => a.Name == "axes");
            Assert.DoesNotContain(split.Attribute, a => a.Name == "num_outputs");
        }
        else
        {
            Assert.Equal(2, reduce.Input.Count);
            Assert.DoesNotContain(reduce.Attribute, a => a.Name == "axes");
            Assert.Contains(split.Attribute, a => a.Name == "num_outputs" && a.I == 2);
        }
    }

    // ------------------------------------------------------------ initializers and random weights

    [Fact]
    public void Initializers_KeepTypesAndBytes()
    {
        var b = new GraphBuilder();
        b.Initializer<Half>("h", [2], [(Half)1.5f, (Half)(-2f)]);
        b.Initializer<long>("l", [3], [1L, -2L, 3L]);
        b.InitializerRaw("raw", DT.Float, [1], BitConverter.GetBytes(3.25f));
        b.Input("x", DT.Float, [2]);
        b.Output(b.Add(b.Cast("h", DT.Float), "x", "y"), DT.Float);
        b.Output(b.Identity("l", "l_out"), DT.Int64);
        b.Output(b.Identity("raw", "raw_out"), DT.Float);
        var model = b.Build();
        Assert.Equal((int)DT.Float16, model.Graph.Initializer[0].DataType);
        var r = Run(model, new Feed("x", [2], new float[] { 1, 1 }));
        Assert.Equal([2.5, -1.0], r["y"].Values);
        Assert.Equal([1.0, -2, 3], r["l_out"].Values);
        Assert.Equal([3.25], r["raw_out"].Values);
        Assert.Throws<ArgumentException>(() => new GraphBuilder().InitializerRaw("bad", DT.Float, [2], new byte[4]));
    }

    [Fact]
    public void Random_IsDeterministicBoundedAndUniform()
    {
        var b = new GraphBuilder();
        var a = b.Random("a", [1 << 20], 0.25f, seed: 7);
        var same = b.Random("same", [1 << 20], 0.25f, seed: 7);
        var other = b.Random("other", [1 << 20], 0.25f, seed: 8);
        var byName = b.Random("by_name", [16], 1f);
        var tensors = b.Graph.Initializer.ToDictionary(t => t.Name);
        var va = TensorData.Read<float>(tensors[a]);
        Assert.Equal(va, TensorData.Read<float>(tensors[same]));
        var vo = TensorData.Read<float>(tensors[other]);
        Assert.True(va.Zip(vo).Count(p => p.First == p.Second) < 100);
        Assert.All(va, v => Assert.InRange(v, -0.25f, 0.25f));
        double mean = va.Average(v => (double)v), variance = va.Average(v => (double)v * v) - mean * mean;
        Assert.InRange(mean, -0.002, 0.002);
        Assert.InRange(variance, 0.25 * 0.25 / 3 * 0.99, 0.25 * 0.25 / 3 * 1.01);
        // Ten equal-width bins each hold about a tenth.
        var bins = new int[10];
        foreach (var v in va) bins[Math.Min(9, (int)((v + 0.25f) / 0.05f))]++;
        Assert.All(bins, c => Assert.InRange(c, (1 << 20) / 10 * 0.97, (1 << 20) / 10 * 1.03));
        // Without a seed the name picks one, so the same name gives the same weights in another builder.
        var again = new GraphBuilder();
        again.Random("by_name", [16], 1f);
        Assert.Equal(TensorData.Read<float>(tensors[byName]), TensorData.Read<float>(again.Graph.Initializer.Single()));
    }

    [Fact]
    public void Random_StreamIsIndependentOfChunking()
    {
        var whole = new float[1000];
        SeededRandom.FillUniform(whole.AsSpan(), 1f, 42);
        var parts = new float[1000];
        SeededRandom.FillUniform(parts.AsSpan(0, 300), 1f, 42);
        SeededRandom.FillUniform(parts.AsSpan(300), 1f, 42, 300);
        Assert.Equal(whole, parts);
        var big = new float[3_000_000];
        SeededRandom.FillUniform(big, 1f, 42); // parallel chunks
        Assert.Equal(whole, big.Take(1000));
        Assert.Equal(SeededRandom.Uniform01(42, 2_999_999) * 2 - 1, big[^1], 6);
    }

    [Fact]
    public void Random_HalfPrecisionRoundsTheFloatStream()
    {
        var b = new GraphBuilder();
        b.Random("h", [1000], 0.5f, seed: 3, type: DT.Float16);
        b.Random("bf", [1000], 0.5f, seed: 3, type: DT.Bfloat16);
        var f = new float[1000];
        SeededRandom.FillUniform(f.AsSpan(), 0.5f, 3);
        var t = b.Graph.Initializer;
        Assert.Equal(f.Select(v => (float)(Half)v), TensorData.Read<Half>(t[0]).Select(v => (float)v));
        Assert.Equal(f.Select(v => BFloat16.FromFloat(v).ToFloat()), TensorData.ReadAsFloat(t[1]));
    }

    [Fact]
    public void Random_FillsLargeTensorsUniformlyInRange()
    {
        var b = new GraphBuilder();
        b.Random("big", [16, 256, 256], 0.02f, seed: 1); // 2^20 floats, filled in parallel parts
        var values = TensorData.Read<float>(b.Graph.Initializer[0]);
        Assert.Equal(1 << 20, values.Length);
        Assert.All(values, v => Assert.InRange(v, -0.02f, 0.02f));
        // Uniform on [-a, a]: mean 0, variance a²/3.
        double mean = values.Average(v => (double)v), variance = values.Average(v => (double)v * v) - mean * mean;
        Assert.InRange(mean, -1e-4, 1e-4);
        Assert.InRange(variance, 0.02 * 0.02 / 3 * 0.99, 0.02 * 0.02 / 3 * 1.01);
    }
}
