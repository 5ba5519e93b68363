using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Tests.Onnx;

/// <summary>One input fed to a test session: float, long, bool, sbyte or byte values and their shape.</summary>
public sealed record Feed(string Name, long[] Shape, Array Values);

/// <summary>One output of a test session, widened to double (int64 outputs too) with its shape.</summary>
public sealed record Fetched(long[] Shape, double[] Values, TensorElementType Type);

/// <summary>
/// Runs built models through ONNX Runtime (CPU, in memory) with the OrtValue API, all graph optimizations on.
/// DequantizeLinear → MatMul is fused into MatMulNBits, whose default accuracy level 4 quantizes the activations to int8;
/// the runner asks for level 1 (float32 compute) so results follow the graph's own semantics exactly.
/// </summary>
public static class OrtRunner
{
    public const string MatMulNBitsAccuracyKey = "session.qdq_matmulnbits_accuracy_level";

    public static Dictionary<string, Fetched> Run(ModelProto model, params Feed[] feeds) =>
        Run(OnnxModel.FromProto(model).ToBytes(), GraphOptimizationLevel.ORT_ENABLE_ALL, feeds);

    public static Dictionary<string, Fetched> Run(ModelProto model, GraphOptimizationLevel level, params Feed[] feeds) =>
        Run(OnnxModel.FromProto(model).ToBytes(), level, feeds);

    public static Dictionary<string, Fetched> Run(byte[] modelBytes, GraphOptimizationLevel level, params Feed[] feeds)
    {
        using var options = Options(level);
        using var session = new InferenceSession(modelBytes, options);
        return Run(session, feeds);
    }

    /// <summary>Runs bytes at the default (full) optimization level.</summary>
    public static Dictionary<string, Fetched> RunBytes(byte[] modelBytes, params Feed[] feeds) => Run(modelBytes, GraphOptimizationLevel.ORT_ENABLE_ALL, feeds);

    /// <summary>Runs a model file, so external data next to it is found.</summary>
    public static Dictionary<string, Fetched> RunFile(string modelPath, params Feed[] feeds)
    {
        using var options = Options(GraphOptimizationLevel.ORT_ENABLE_ALL);
        using var session = new InferenceSession(modelPath, options);
        return Run(session, feeds);
    }

    private static SessionOptions Options(GraphOptimizationLevel level)
    {
        var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, GraphOptimizationLevel = level };
        options.AddSessionConfigEntry(MatMulNBitsAccuracyKey, "1");
        return options;
    }

    public static void AssertFinite(Fetched fetched, string what)
    {
        for (int i = 0; i < fetched.Values.Length; i++)
            if (!double.IsFinite(fetched.Values[i])) Assert.Fail($"{what}: element {i} is {fetched.Values[i]}");
    }

    /// <summary>Runs an open session (e.g. one with profiling on).</summary>
    public static Dictionary<string, Fetched> Run(InferenceSession session, params Feed[] feeds)
    {
        var inputs = new List<OrtValue>();
        try
        {
            foreach (var f in feeds) inputs.Add(ToOrtValue(f));
            using var runOptions = new RunOptions();
            var outputNames = session.OutputNames.ToArray();
            using var results = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), inputs, outputNames);
            var fetched = new Dictionary<string, Fetched>();
            int k = 0;
            foreach (var value in results)
            {
                var info = value.GetTensorTypeAndShape();
                double[] data = info.ElementDataType switch
                {
                    TensorElementType.Float => value.GetTensorDataAsSpan<float>().ToArray().Select(v => (double)v).ToArray(),
                    TensorElementType.Int64 => value.GetTensorDataAsSpan<long>().ToArray().Select(v => (double)v).ToArray(),
                    TensorElementType.Int32 => value.GetTensorDataAsSpan<int>().ToArray().Select(v => (double)v).ToArray(),
                    TensorElementType.Float16 => value.GetTensorDataAsSpan<Float16>().ToArray().Select(v => (double)(float)v).ToArray(),
                    TensorElementType.Bool => value.GetTensorDataAsSpan<bool>().ToArray().Select(v => v ? 1.0 : 0.0).ToArray(),
                    TensorElementType.Int8 => value.GetTensorDataAsSpan<sbyte>().ToArray().Select(v => (double)v).ToArray(),
                    TensorElementType.UInt8 => value.GetTensorDataAsSpan<byte>().ToArray().Select(v => (double)v).ToArray(),
                    var t => throw new NotSupportedException($"output type {t}"),
                };
                fetched[outputNames[k++]] = new Fetched(info.Shape, data, info.ElementDataType);
            }
            return fetched;
        }
        finally
        {
            foreach (var v in inputs) v.Dispose();
        }
    }

    private static OrtValue ToOrtValue(Feed f) => f.Values switch
    {
        float[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        long[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        int[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        bool[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        sbyte[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        byte[] a => OrtValue.CreateTensorValueFromMemory(a, f.Shape),
        _ => throw new NotSupportedException($"input type {f.Values.GetType().Name}"),
    };

    /// <summary>Deterministic test data in [-scale, scale) from System.Random (independent of the library's generator).</summary>
    public static float[] RandomFloats(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        return values;
    }

    public static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double atol = 1e-5, double rtol = 1e-5)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            double tolerance = atol + rtol * Math.Abs(expected[i]);
            if (!(Math.Abs(expected[i] - actual[i]) <= tolerance))
                Assert.Fail($"element {i}: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tolerance:G3})");
        }
    }

    public static byte[] Bytes(ModelProto model) => model.ToByteArray();
}
