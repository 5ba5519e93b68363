using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// A few fixed, seeded inputs for any component, made from its graph inputs alone, so a compressed variant can be
/// compared with the original on the same data: floats ~ N(0, 1) (latents, hidden states, images in [-1, 1] are close
/// enough), token ids uniform over the embedding table feeding them, timesteps spread over the schedule
/// (999, 500, 100, …). Symbolic dimensions: batch 1, sequence 77, anything else <see cref="SpatialSize"/>.
/// </summary>
public sealed class CalibrationInputs : IDisposable
{
    private readonly List<(string Name, OrtValue Value)[]> _samples = [];

    private CalibrationInputs() { }

    /// <summary>Inputs of each sample, in graph-input order.</summary>
    public IReadOnlyList<(string Name, OrtValue Value)[]> Samples => _samples;

    /// <param name="spatialSize">Size given to symbolic dimensions other than batch and sequence (latent height/width).</param>
    /// <param name="batch">Size given to symbolic batch dimensions (2 for a UNet run with classifier-free guidance).</param>
    public static CalibrationInputs For(GraphProto graph, int samples, int spatialSize, ulong seed = 0, int batch = 1)
    {
        if (batch < 1) throw new InvalidArgumentException(nameof(batch), $"{batch} must be at least 1");
        var initializers = new HashSet<string>(graph.Initializer.Select(t => t.Name), StringComparer.Ordinal);
        var inputs = graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
        var result = new CalibrationInputs();
        try
        {
            for (int s = 0; s < samples; s++)
            {
                var random = new Schedulers.GaussianNoise(seed * 1000 + (ulong)s);
                var sample = new (string, OrtValue)[inputs.Count];
                for (int i = 0; i < inputs.Count; i++)
                    sample[i] = (inputs[i].Name, Create(graph, inputs[i], s, spatialSize, batch, random));
                result._samples.Add(sample);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static OrtValue Create(GraphProto graph, ValueInfoProto input, int sample, int spatialSize, int batch, Schedulers.GaussianNoise random)
    {
        var tensorType = input.Type?.TensorType ?? throw new InvalidArgumentException("model", $"input '{input.Name}' is not a tensor; calibration supports tensor inputs only");
        long[] shape = tensorType.Shape?.Dim.Select(d => d.HasDimValue && d.DimValue > 0 ? d.DimValue : SymbolicSize(d.DimParam, input.Name, spatialSize, batch)).ToArray() ?? [];
        long count = shape.Aggregate(1L, (a, d) => a * d);
        string name = input.Name.ToLowerInvariant();
        switch ((DT)tensorType.ElemType)
        {
            case DT.Float:
            {
                var values = new float[count];
                if (name.Contains("timestep")) Array.Fill(values, Timestep(sample));
                else if (name.Contains("ratio")) Array.Fill(values, (Timestep(sample) + 1) / 1000f);
                else random.Fill(values);
                return OrtValue.CreateTensorValueFromMemory(values, shape);
            }
            case DT.Int64 or DT.Int32:
            {
                long limit = name.Contains("timestep") ? 1000 : EmbeddingRows(graph, input.Name);
                var values = new long[count];
                for (long i = 0; i < count; i++)
                    values[i] = name.Contains("timestep") ? Timestep(sample) : (long)(Onnx.SeededRandom.Uniform01(random.Seed, i) * limit);
                return (DT)tensorType.ElemType == DT.Int64
                    ? OrtValue.CreateTensorValueFromMemory(values, shape)
                    : OrtValue.CreateTensorValueFromMemory(values.Select(v => (int)v).ToArray(), shape);
            }
            default:
                throw new InvalidArgumentException("model", $"input '{input.Name}' has element type {(DT)tensorType.ElemType}; calibration supports float, int32 and int64 inputs");
        }
    }

    private static int Timestep(int sample) => sample switch { 0 => 999, 1 => 500, 2 => 100, _ => 999 - 997 * sample % 1000 };

    private static long SymbolicSize(string param, string input, int spatialSize, int batch)
    {
        string p = param.ToLowerInvariant();
        if (p.Contains("batch")) return batch;
        if (p.Contains("sequence") || p.Contains("seq") || input.Contains("ids", StringComparison.OrdinalIgnoreCase)) return 77;
        return spatialSize;
    }

    /// <summary>Rows of the first Gather table the ids feed (possibly through a Cast), so ids stay in range; else 49408 (CLIP).</summary>
    private static long EmbeddingRows(GraphProto graph, string input)
    {
        var tables = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var frontier = new HashSet<string>(StringComparer.Ordinal) { input };
        foreach (var node in graph.Node)
        {
            if (!node.Input.Any(frontier.Contains)) continue;
            if (node.OpType == "Gather" && node.Input.Count > 1 && frontier.Contains(node.Input[1]) && tables.TryGetValue(node.Input[0], out var table) && table.Dims.Count > 0)
                return table.Dims[0];
            if (node.OpType is "Cast" or "Reshape" or "Identity" or "Flatten") foreach (var o in node.Output) frontier.Add(o);
        }
        return 49408;
    }

    public void Dispose()
    {
        foreach (var sample in _samples)
            foreach (var (_, value) in sample) value.Dispose();
        _samples.Clear();
    }
}
