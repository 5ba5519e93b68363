using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Tests.Runtime;

public sealed class ProfileTraceTests
{
    // Two runs; run 0 is the warm-up. Fence events, session events other than model_run and node events without
    // the _kernel_time suffix must be ignored.
    private const string Trace = """
        [
          {"cat":"Session","pid":1,"tid":1,"dur":500,"ts":0,"ph":"X","name":"session_initialization","args":{}},
          {"cat":"Session","pid":1,"tid":1,"dur":50,"ts":1000,"ph":"X","name":"model_run","args":{}},
          {"cat":"Node","pid":1,"tid":1,"dur":0,"ts":1001,"ph":"X","name":"conv_fence_before","args":{"op_name":"Conv"}},
          {"cat":"Node","pid":1,"tid":1,"dur":10,"ts":1002,"ph":"X","name":"conv_kernel_time","args":{"op_name":"Conv","provider":"CPUExecutionProvider","input_type_shape":[{"float":[1,4,8,8]},{"float":[8,4,3,3]}],"output_type_shape":[{"float":[1,8,8,8]}]}},
          {"cat":"Node","pid":1,"tid":1,"dur":5,"ts":1020,"ph":"X","name":"relu_kernel_time","args":{"op_name":"Relu","provider":"CPUExecutionProvider"}},
          {"cat":"Session","pid":1,"tid":1,"dur":60,"ts":2000,"ph":"X","name":"model_run","args":{}},
          {"cat":"Node","pid":1,"tid":1,"dur":20,"ts":2002,"ph":"X","name":"conv_kernel_time","args":{"op_name":"Conv","provider":"CPUExecutionProvider","input_type_shape":[{"float":[1,4,8,8]},{"float":[8,4,3,3]}],"output_type_shape":[{"float":[1,8,8,8]}]}},
          {"cat":"Node","pid":1,"tid":1,"dur":10,"ts":2025,"ph":"X","name":"relu_kernel_time","args":{"op_name":"Relu","provider":"CPUExecutionProvider"}},
          {"cat":"Node","pid":1,"tid":1,"dur":30,"ts":2040,"ph":"X","name":"gemm_kernel_time","args":{"op_name":"Gemm","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","pid":1,"tid":1,"dur":0,"ts":2041,"ph":"X","name":"gemm_fence_after","args":{"op_name":"Gemm"}}
        ]
        """;

    [Fact]
    public void ParsesKernelEventsIntoRuns()
    {
        var trace = ProfileTrace.Parse(Trace);
        Assert.Equal(2, trace.Runs);
        Assert.Equal([50L, 60L], trace.RunDurationsUs);
        Assert.Equal(5, trace.Nodes.Count);
        Assert.Equal([0, 0, 1, 1, 1], trace.Nodes.Select(n => n.Run));
        var conv = trace.Nodes[0];
        Assert.Equal(("conv", "Conv", "CPUExecutionProvider", 10L), (conv.Node, conv.OpType, conv.Provider, conv.DurationUs));
        Assert.Equal(["float[1,4,8,8]", "float[8,4,3,3]"], conv.InputShapes);
        Assert.Equal(["float[1,8,8,8]"], conv.OutputShapes);
    }

    [Fact]
    public void WarmUpIsSkippedAndAggregatesAreExact()
    {
        var report = ProfileReport.From(ProfileTrace.Parse(Trace), skipRuns: 1, "test", "test.onnx");
        Assert.Equal((1, 1), (report.SkippedRuns, report.MeasuredRuns));
        Assert.Equal(60, report.NodeTimePerRunUs);
        Assert.Equal(["gemm", "conv", "relu"], report.Nodes.Select(n => n.Name));
        Assert.Equal([30.0, 20.0, 10.0], report.Nodes.Select(n => n.MeanUs));
        Assert.Equal([50.0, 100.0 / 3, 100.0 / 6], report.Nodes.Select(n => n.SharePercent), new ToleranceComparer(1e-9));
        Assert.Equal(ComputeUnit.Gpu, report.Nodes[0].Unit);

        Assert.Equal([("CPU", 2, 30.0), ("GPU", 1, 30.0)], report.ByComputeUnit.Select(g => (g.Key, g.Nodes, g.MeanUs)));
        Assert.Equal([("CPUExecutionProvider", 2), ("CUDAExecutionProvider", 1)], report.ByProvider.Select(g => (g.Key, g.Nodes)));
        Assert.Equal([("Gemm", 30.0), ("Conv", 20.0), ("Relu", 10.0)], report.ByOpType.Select(g => (g.Key, g.MeanUs)));
        Assert.Equal(100, report.ByOpType.Sum(g => g.SharePercent), 9);

        // Conv: output [1, 8, 8, 8], weight [8, 4, 3, 3] → 2 · 512 · 36 operations in 20 µs; Gemm's event has no shapes.
        double convFlop = 2.0 * 512 * 36;
        var conv = report.ByOpType.Single(g => g.Key == "Conv");
        Assert.Equal(convFlop / 1e9, conv.Gflop, 15);
        Assert.Equal(convFlop / 20e-6 / 1e9, conv.Gflops!.Value, 9);
        Assert.Null(report.ByOpType.Single(g => g.Key == "Gemm").Gflops);
        Assert.Equal(convFlop / 1e9, report.ByComputeUnit.Single(g => g.Key == "CPU").Gflop, 15);
    }

    [Fact]
    public void WithoutSkippingTimesAreMeansOverRuns()
    {
        var report = ProfileReport.From(ProfileTrace.Parse(Trace), skipRuns: 0, "test", "test.onnx");
        Assert.Equal(2, report.MeasuredRuns);
        Assert.Equal(37.5, report.NodeTimePerRunUs);
        Assert.Equal([("conv", 15.0, 2), ("gemm", 15.0, 1), ("relu", 7.5, 2)], report.Nodes.Select(n => (n.Name, n.MeanUs, n.Calls)));
    }

    [Fact]
    public void ATraceThatIsNotJsonIsATypedError()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bad-trace-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, "{ not json");
        try
        {
            var e = Assert.Throws<InvalidArgumentException>(() => ProfileTrace.Load(path));
            Assert.Contains(path, e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(double obj) => 0;
    }
}
