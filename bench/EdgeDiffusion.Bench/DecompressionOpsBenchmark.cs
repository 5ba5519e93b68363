using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Bench;

/// <summary>
/// One layer (a UNet-sized Conv or MatMul) with its weight stored in different forms, timed per call in ONNX Runtime:
/// how much just-in-time decompression costs per form, to choose the forms the compressor emits.
/// </summary>
public static class DecompressionOpsBenchmark
{
    private sealed record Layer(string Name, bool IsConv, long[] Input, long[] Weight);

    private static readonly Layer[] Layers =
    [
        new("conv 1280→1280 3×3 @ 2×16×16", true, [2, 1280, 16, 16], [1280, 1280, 3, 3]),
        new("conv 320→320 3×3 @ 2×64×64", true, [2, 320, 64, 64], [320, 320, 3, 3]),
        new("matmul [2·4096, 320]×[320, 320]", false, [2 * 4096, 320], [320, 320]),
        new("matmul [2·256, 1280]×[1280, 5120]", false, [2 * 256, 1280], [1280, 5120]),
    ];

    public static void Run(int runs, int threads, string? only)
    {
        Console.WriteLine($"{"layer",-36} {"form",-44} {"load ms",8} {"median ms",10} {"min ms",8}  ×fp32");
        foreach (var layer in Layers)
        {
            if (only is not null && !layer.Name.Contains(only, StringComparison.Ordinal)) continue;
            double baseline = 0;
            foreach (var (form, build, config) in Forms(layer))
            {
                var model = BuildModel(layer, build);
                var (load, median, min) = Time(model, layer, runs, threads, config);
                if (baseline == 0) baseline = median;
                Console.WriteLine($"{layer.Name,-36} {form,-44} {load,8:0} {median,10:0.0} {min,8:0.0}  {median / baseline:0.00}");
            }
        }
    }

    private static IEnumerable<(string Form, Func<GraphBuilder, Layer, string> Weight, Dictionary<string, string> Config)> Forms(Layer layer)
    {
        var noFold = new Dictionary<string, string> { ["optimization.disable_specified_optimizers"] = "ConstantFolding" };
        var none = new Dictionary<string, string>();
        yield return ("fp32 initializer", (g, l) => g.Random("w", l.Weight, 0.02f, 1), none);
        yield return ("DQ int8 per-channel", (g, l) => DequantizeInt8(g, l), none);
        if (!layer.IsConv)
        {
            yield return ("DQ int4 block 32 (MatMulNBits)", (g, l) => DequantizeInt4Blocked(g, l), none);
            yield return ("DQ int4 block 32, accuracy 4", (g, l) => DequantizeInt4Blocked(g, l),
                new Dictionary<string, string> { ["session.qdq_matmulnbits_accuracy_level"] = "4" });
        }
        if (layer.IsConv)
        {
            yield return ("im2col → DQ int8 → MatMulNBits", (g, l) => "im2col:int8", none);
            yield return ("im2col → DQ int8 → MatMulNBits acc 4", (g, l) => "im2col:int8",
                new Dictionary<string, string> { ["session.qdq_matmulnbits_accuracy_level"] = "4" });
            yield return ("im2col → DQ int4 b32 → MatMulNBits", (g, l) => "im2col:int4", none);
            yield return ("im2col → fp32 MatMul", (g, l) => "im2col:fp32", none);
            // Activations quantized too (static scales): ONNX Runtime fuses Q → DQ → Conv → Q → DQ into QLinearConv
            // (u8 × s8, VNNI where the CPU has it); the timing includes quantizing the input and dequantizing the output.
            yield return ("QDQ int8 activations+weights (QLinearConv)", (g, l) => "qdq:" + DequantizeInt8(g, l), none);
        }
        yield return ("Cast(uint8)·scale, no folding", (g, l) => CastScale(g, l), noFold);
        yield return ("Gather(LUT64, Cast(uint8)), no fold", (g, l) => Lut(g, l, DT.Int32), noFold);
        yield return ("Gather(LUT64, Cast(uint8)), folded", (g, l) => Lut(g, l, DT.Int32), none);
    }

    private static ModelProto BuildModel(Layer layer, Func<GraphBuilder, Layer, string> weight)
    {
        var g = new GraphBuilder(21);
        string x = g.Input("x", DT.Float, layer.Input.Select(d => (Dim)d).ToArray());
        string w = weight(g, layer);
        bool qdq = w.StartsWith("qdq:", StringComparison.Ordinal);
        if (qdq)
        {
            w = w["qdq:".Length..];
            x = QuantizeDequantize(g, x, "x", 0.02f);
        }
        string y = w.StartsWith("im2col:", StringComparison.Ordinal) ? Im2ColConv(g, x, layer, w["im2col:".Length..])
            : layer.IsConv ? g.Conv(x, w, pads: [1, 1, 1, 1]) : g.MatMul(x, w);
        if (qdq) y = QuantizeDequantize(g, y, "y", 0.05f);
        g.Output(y, DT.Float);
        return g.Build();
    }

    /// <summary>
    /// A 3×3 same-padded convolution as one matrix product: the nine shifted views of the padded input are stacked on the
    /// channel axis (tap-major), moved to rows of [N·H·W, 9·I], and multiplied by the weight as [9·I, O], which lets a
    /// quantized weight reach MatMulNBits (dequantized inside the kernel) instead of a DequantizeLinear per call.
    /// </summary>
    private static string Im2ColConv(GraphBuilder g, string x, Layer l, string form)
    {
        long n = l.Input[0], c = l.Input[1], h = l.Input[2], w = l.Input[3], o = l.Weight[0];
        string padded = g.Node("Pad", [x, g.Constant(new long[] { 0, 0, 1, 1, 0, 0, 1, 1 })])[0];
        var taps = new List<string>();
        for (long dy = 0; dy < 3; dy++)
            for (long dx = 0; dx < 3; dx++)
                taps.Add(g.Node("Slice", [padded, g.Constant(new long[] { dy, dx }), g.Constant(new long[] { dy + h, dx + w }), g.Constant(new long[] { 2, 3 })])[0]);
        string stacked = g.Concat(taps, 1);
        string rows = g.Reshape(g.Transpose(stacked, [0, 2, 3, 1]), [n * h * w, 9 * c]);
        long k = 9 * c;
        string b;
        if (form == "fp32") b = g.Random("w_cols", [k, o], 0.02f, 1);
        else if (form == "int8")
        {
            string q = g.InitializerRaw("w_q", DT.Int8, [k, o], RandomBytes(k * o, 2));
            b = g.Node("DequantizeLinear", [q, g.Initializer<float>("w_s", [o], Scales(o))], attributes: [Attr.Int("axis", 1)])[0];
        }
        else
        {
            var values = RandomBytes(k * o, 3).Select(v => (v % 16) - 8).ToArray();
            string q = g.InitializerInt4("w_q", [k, o], values);
            b = g.Node("DequantizeLinear", [q, g.Initializer<float>("w_s", [k / 32, o], Scales(k / 32 * o))],
                attributes: [Attr.Int("axis", 0), Attr.Int("block_size", 32)])[0];
        }
        string product = g.MatMul(rows, b);
        return g.Transpose(g.Reshape(product, [n, h, w, o]), [0, 3, 1, 2]);
    }

    private static int OutAxis(Layer l) => l.IsConv ? 0 : 1;
    private static long Count(Layer l) => l.Weight.Aggregate(1L, (a, d) => a * d);

    private static byte[] RandomBytes(long count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>QuantizeLinear → DequantizeLinear with a per-tensor uint8 scale and zero point 128: the QDQ form of an activation.</summary>
    private static string QuantizeDequantize(GraphBuilder g, string value, string name, float scale)
    {
        string s = g.Initializer<float>(name + "_s", [], [scale]);
        string zp = g.InitializerRaw(name + "_zp", DT.Uint8, [], [128]);
        string q = g.Node("QuantizeLinear", [value, s, zp])[0];
        return g.Node("DequantizeLinear", [q, s, zp])[0];
    }

    private static float[] Scales(long count) => Enumerable.Range(0, (int)count).Select(i => 1e-3f * (1 + i % 7)).ToArray();

    private static string DequantizeInt8(GraphBuilder g, Layer l)
    {
        string q = g.InitializerRaw("w_q", DT.Int8, l.Weight, RandomBytes(Count(l), 2));
        long channels = l.Weight[OutAxis(l)];
        string s = g.Initializer<float>("w_s", [channels], Scales(channels));
        return g.Node("DequantizeLinear", [q, s], attributes: [Attr.Int("axis", OutAxis(l))])[0];
    }

    private static string DequantizeInt4Blocked(GraphBuilder g, Layer l)
    {
        var values = RandomBytes(Count(l), 3).Select(b => (b % 16) - 8).ToArray();
        string q = g.InitializerInt4("w_q", l.Weight, values);
        long[] scaleShape = [l.Weight[0] / 32, l.Weight[1]];
        string s = g.Initializer<float>("w_s", scaleShape, Scales(scaleShape[0] * scaleShape[1]));
        return g.Node("DequantizeLinear", [q, s], attributes: [Attr.Int("axis", 0), Attr.Int("block_size", 32)])[0];
    }

    private static string CastScale(GraphBuilder g, Layer l)
    {
        string q = g.InitializerRaw("w_q", DT.Uint8, l.Weight, RandomBytes(Count(l), 4));
        long channels = l.Weight[OutAxis(l)];
        long[] scaleShape = l.IsConv ? [channels, 1, 1, 1] : [1, channels];
        string s = g.Initializer<float>("w_s", scaleShape, Scales(channels));
        return g.Mul(g.Cast(q, DT.Float), s);
    }

    private static string Lut(GraphBuilder g, Layer l, DT indexType)
    {
        string q = g.InitializerRaw("w_idx", DT.Uint8, l.Weight, RandomBytes(Count(l), 5).Select(b => (byte)(b & 63)).ToArray());
        string lut = g.Initializer<float>("w_lut", [64], Enumerable.Range(0, 64).Select(i => (i - 32) * 1e-3f).ToArray());
        return g.Node("Gather", [lut, g.Cast(q, indexType)], attributes: [Attr.Int("axis", 0)])[0];
    }

    private static (double LoadMs, double MedianMs, double MinMs) Time(ModelProto model, Layer layer, int runs, int threads, Dictionary<string, string> config)
    {
        var bytes = OnnxModel.FromProto(model).ToBytes();
        using var options = new SessionOptions { IntraOpNumThreads = threads, EnableMemoryPattern = false, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        foreach (var (k, v) in config) options.AddSessionConfigEntry(k, v);
        var load = Stopwatch.StartNew();
        using var session = new InferenceSession(bytes, options);
        load.Stop();
        var input = new float[layer.Input.Aggregate(1L, (a, d) => a * d)];
        var rng = new Random(7);
        for (int i = 0; i < input.Length; i++) input[i] = (float)rng.NextDouble() - 0.5f;
        using var x = OrtValue.CreateTensorValueFromMemory(input, layer.Input);
        using var runOptions = new RunOptions();
        var times = new List<double>();
        for (int r = 0; r < runs + 1; r++)
        {
            var watch = Stopwatch.StartNew();
            using var outputs = session.Run(runOptions, ["x"], [x], session.OutputNames);
            watch.Stop();
            if (r > 0) times.Add(watch.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return (load.Elapsed.TotalMilliseconds, times[times.Count / 2], times[0]);
    }
}
