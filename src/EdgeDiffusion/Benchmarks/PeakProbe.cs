using System.Diagnostics;
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
        var graph = new GraphProto { Name = "gemm_probe" };
        graph.Input.Add(Tensor("A", n, n));
        graph.Input.Add(Tensor("B", n, n));
        graph.Output.Add(Tensor("C", n, n));
        graph.Node.Add(new NodeProto { OpType = "MatMul", Name = "matmul", Input = { "A", "B" }, Output = { "C" } });
        return Measure(graph, [("A", [n, n]), ("B", [n, n])], 2.0 * n * n * (double)n, threads);
    }

    /// <summary>GFLOP/s of a channels→channels 3×3 convolution, padding 1, on batch × channels × side²: 2·batch·side²·channels²·9 operations.</summary>
    public static double ConvGflops(int channels = 1280, int side = 16, int batch = 2, int threads = 0)
    {
        var graph = new GraphProto { Name = "conv_probe" };
        graph.Input.Add(Tensor("X", batch, channels, side, side));
        graph.Input.Add(Tensor("W", channels, channels, 3, 3));
        graph.Output.Add(Tensor("Y", batch, channels, side, side));
        var conv = new NodeProto { OpType = "Conv", Name = "conv", Input = { "X", "W" }, Output = { "Y" } };
        conv.Attribute.Add(new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 1, 1, 1, 1 } });
        conv.Attribute.Add(new AttributeProto { Name = "kernel_shape", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 3, 3 } });
        graph.Node.Add(conv);
        double flops = 2.0 * batch * side * side * channels * (double)channels * 9;
        return Measure(graph, [("X", [batch, channels, side, side]), ("W", [channels, channels, 3, 3])], flops, threads);
    }

    private static double Measure(GraphProto graph, (string Name, long[] Shape)[] inputs, double flops, int threads)
    {
        var proto = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "edgediffusion-bench" };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        byte[] bytes;
        using (var stream = new MemoryStream())
        {
            Google.Protobuf.MessageExtensions.WriteTo(proto, stream);
            bytes = stream.ToArray();
        }
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
            string output = graph.Output[0].Name;
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

    private static ValueInfoProto Tensor(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DT.Float, Shape = shape } } };
    }
}
