using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>ONNX Runtime helpers for the compression tests: what ORT turns a model into, and feeds made from a model's inputs.</summary>
internal static class CompressionOrt
{
    public static string TinyShapes => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    /// <summary>The op types of the graph ONNX Runtime runs after all its optimizations (its optimized model, saved and read back).</summary>
    public static List<string> OptimizedOpTypes(ModelProto model, IReadOnlyDictionary<string, string>? entries = null)
    {
        string path = Path.Combine(Path.GetTempPath(), $"edgediff-optimized-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = path, IntraOpNumThreads = 1 })
            {
                options.AddSessionConfigEntry(OrtRunner.MatMulNBitsAccuracyKey, "1");
                foreach (var (k, v) in entries ?? new Dictionary<string, string>()) options.AddSessionConfigEntry(k, v);
                using var session = new InferenceSession(model.ToByteArray(), options);
            }
            using var optimized = OnnxModel.Load(path);
            return [.. optimized.Graph.Node.Select(n => n.OpType)];
        }
        finally
        {
            foreach (var f in Directory.EnumerateFiles(Path.GetTempPath(), Path.GetFileName(path) + "*")) File.Delete(f);
        }
    }

    /// <summary>The op types of the nodes ONNX Runtime's profiler saw run (the "Node" events of one profiled run).</summary>
    public static HashSet<string> ProfiledOpTypes(ModelProto model, Feed[] feeds)
    {
        string prefix = Path.Combine(Path.GetTempPath(), $"edgediff-profile-{Guid.NewGuid():N}");
        using var options = new SessionOptions { IntraOpNumThreads = 1, EnableProfiling = true, ProfileOutputPathPrefix = prefix };
        options.AddSessionConfigEntry(OrtRunner.MatMulNBitsAccuracyKey, "1");
        using var session = new InferenceSession(model.ToByteArray(), options);
        OrtRunner.Run(session, feeds);
        string profile = session.EndProfiling();
        try
        {
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(profile));
            return [.. json.RootElement.EnumerateArray()
                .Where(e => e.TryGetProperty("cat", out var cat) && cat.GetString() == "Node")
                .Select(e => e.TryGetProperty("args", out var args) && args.TryGetProperty("op_name", out var op) ? op.GetString() : null)
                .OfType<string>()];
        }
        finally
        {
            File.Delete(profile);
        }
    }

    /// <summary>
    /// One deterministic feed per model input: floats in [-1, 1), integers in [0, 50); symbolic dimensions from
    /// <paramref name="dims"/> by name (1 when not given).
    /// </summary>
    public static Feed[] FeedsFor(ModelProto model, int seed, IReadOnlyDictionary<string, int>? dims = null)
    {
        using var session = new InferenceSession(model.ToByteArray());
        var feeds = new List<Feed>();
        foreach (var (name, meta) in session.InputMetadata)
        {
            var shape = meta.Dimensions.Select((d, i) => d >= 0 ? (long)d : dims?.GetValueOrDefault(meta.SymbolicDimensions[i], 1) ?? 1).ToArray();
            int count = (int)shape.Aggregate(1L, (a, d) => a * d);
            var random = new Random(seed++);
            Array values = meta.ElementDataType switch
            {
                TensorElementType.Float => OrtRunner.RandomFloats(count, random.Next()),
                TensorElementType.Int64 => Enumerable.Range(0, count).Select(_ => (long)random.Next(50)).ToArray(),
                TensorElementType.Int32 => Enumerable.Range(0, count).Select(_ => random.Next(50)).ToArray(),
                var t => throw new NotSupportedException($"input {name} is {t}"),
            };
            feeds.Add(new Feed(name, shape, values));
        }
        return [.. feeds];
    }

    /// <summary>Peak signal-to-noise ratio in dB of <paramref name="actual"/> against <paramref name="reference"/>, the peak being the reference's range.</summary>
    public static double PsnrDb(IReadOnlyList<double> reference, IReadOnlyList<double> actual)
    {
        double mse = 0;
        for (int i = 0; i < reference.Count; i++) mse += (reference[i] - actual[i]) * (reference[i] - actual[i]);
        mse /= reference.Count;
        double range = reference.Max() - reference.Min();
        return mse == 0 ? double.PositiveInfinity : 10 * Math.Log10(range * range / mse);
    }
}
