using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Benchmarks;

/// <summary>
/// This machine's float32 throughput in ONNX Runtime, measured on two dense kernels a diffusion model is made of: a square
/// MatMul and a 3×3 convolution (1280 → 1280 channels on 2 × 16 × 16, a SD UNet's deepest level). Best of 5 after a warm-up.
/// </summary>
public static class PeakProbe
{
    /// <summary>GFLOP/s of an n×n×n MatMul (2n³ operations per run).</summary>
    public static double GemmGflops(int n, int threads = 0)
    {
        var g = new GraphBuilder(17, "gemm_probe");
        g.Output(g.MatMul(g.Input("A", DT.Float, [n, n]), g.Input("B", DT.Float, [n, n])), DT.Float);
        return Measure(g.Build(), 2.0 * n * n * (double)n, threads);
    }

    /// <summary>GFLOP/s of a channels→channels 3×3 convolution, padding 1, on batch × channels × side²: 2·batch·side²·channels²·9 operations.</summary>
    public static double ConvGflops(int channels = 1280, int side = 16, int batch = 2, int threads = 0)
    {
        var g = new GraphBuilder(17, "conv_probe");
        g.Output(g.Conv(g.Input("X", DT.Float, [batch, channels, side, side]), g.Input("W", DT.Float, [channels, channels, 3, 3]), pads: [1, 1, 1, 1]), DT.Float);
        double flops = 2.0 * batch * side * side * channels * (double)channels * 9;
        return Measure(g.Build(), flops, threads);
    }

    /// <summary>Best-of-5 time of the model on seeded random inputs of its declared (fixed) input shapes.</summary>
    private static double Measure(ModelProto model, double flops, int threads)
    {
        var inputs = model.Graph.Input.Select(i => (i.Name, Shape: i.Type.TensorType.Shape.Dim.Select(d => d.DimValue).ToArray())).ToArray();
        byte[] bytes = OnnxModel.FromProto(model).ToBytes();
        using var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = new InferenceSession(bytes, options);
        var random = new Schedulers.GaussianNoise(7);
        var values = new List<OrtValue>();
        try
        {
            foreach (var (_, shape) in inputs)
            {
                var data = new float[shape.Aggregate(1L, (p, d) => p * d)];
                random.Fill(data);
                values.Add(OrtValue.CreateTensorValueFromMemory(data, shape));
            }
            string[] names = [.. inputs.Select(i => i.Name)];
            string output = model.Graph.Output[0].Name;
            using var runOptions = new RunOptions();
            double best = double.MaxValue;
            for (int i = 0; i < 6; i++)
            {
                var clock = Stopwatch.StartNew();
                using (session.Run(runOptions, names, values, [output])) { }
                if (i > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
            }
            return flops / best / 1e9;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }
}
