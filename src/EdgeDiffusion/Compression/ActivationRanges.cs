using System.Globalization;
using System.Text.Json;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>The range one activation tensor took over a calibration set.</summary>
public readonly record struct ActivationRange(float Min, float Max)
{
    /// <summary>
    /// uint8 asymmetric parameters covering the range widened to hold 0 (so zero padding and ReLU-like zeros are exact):
    /// scale = (max − min) / 255, zero point = round(−min / scale).
    /// </summary>
    public (float Scale, byte ZeroPoint) UInt8Parameters()
    {
        float lo = MathF.Min(Min, 0f), hi = MathF.Max(Max, 0f);
        float scale = (hi - lo) / 255f;
        if (!(scale > 0f) || !float.IsFinite(scale)) return (1f, 0);
        return (scale, (byte)Math.Clamp(MathF.Round(-lo / scale), 0f, 255f));
    }
}

/// <summary>
/// Static activation ranges of a model, measured by running it on a calibration set (<see cref="Calibrate"/>): what a
/// W8A8 graph's QuantizeLinear scales come from. Kept in the model's metadata_props under <see cref="MetadataKey"/>,
/// which ONNX Runtime ignores, so a compressed folder carries them for serving its weights as int8 later.
/// </summary>
public sealed class ActivationRanges
{
    /// <summary>The model metadata key holding the ranges as JSON {tensor: [min, max]}.</summary>
    public const string MetadataKey = "edgediffusion.activation_ranges";

    private readonly Dictionary<string, ActivationRange> _ranges;

    public ActivationRanges(IReadOnlyDictionary<string, ActivationRange> ranges, string calibration)
    {
        _ranges = new Dictionary<string, ActivationRange>(ranges, StringComparer.Ordinal);
        Calibration = calibration;
    }

    /// <summary>What the ranges were measured on (e.g. "4 prompts × 8 steps, trajectories of the model itself").</summary>
    public string Calibration { get; }

    public IReadOnlyDictionary<string, ActivationRange> ByTensor => _ranges;

    public bool TryGet(string tensor, out ActivationRange range) => _ranges.TryGetValue(tensor, out range);

    /// <summary>Writes the ranges into <paramref name="proto"/>'s metadata (replacing earlier ones).</summary>
    public void WriteTo(ModelProto proto)
    {
        for (int i = proto.MetadataProps.Count - 1; i >= 0; i--)
            if (proto.MetadataProps[i].Key is MetadataKey or CalibrationKey) proto.MetadataProps.RemoveAt(i);
        var json = JsonSerializer.Serialize(_ranges.OrderBy(p => p.Key, StringComparer.Ordinal)
            .ToDictionary(p => p.Key, p => new[] { p.Value.Min, p.Value.Max }));
        proto.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = json });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = CalibrationKey, Value = Calibration });
    }

    private const string CalibrationKey = "edgediffusion.calibration";

    /// <summary>The ranges a model's metadata holds, or null when it holds none.</summary>
    public static ActivationRanges? ReadFrom(ModelProto proto, string file)
    {
        var entry = proto.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        Dictionary<string, float[]>? parsed;
        try { parsed = JsonSerializer.Deserialize<Dictionary<string, float[]>>(entry.Value); }
        catch (JsonException e) { throw new OnnxFormatException(file, $"metadata '{MetadataKey}' is not valid JSON ({e.Message}); compress the model again", e); }
        var ranges = new Dictionary<string, ActivationRange>(StringComparer.Ordinal);
        foreach (var (name, pair) in parsed ?? [])
        {
            if (pair is not { Length: 2 } || !(pair[0] <= pair[1]))
                throw new OnnxFormatException(file, $"metadata '{MetadataKey}' has a bad range for '{name}'; compress the model again");
            ranges[name] = new ActivationRange(pair[0], pair[1]);
        }
        string calibration = proto.MetadataProps.FirstOrDefault(p => p.Key == CalibrationKey)?.Value ?? "";
        return new ActivationRanges(ranges, calibration);
    }

    /// <summary>
    /// Runs <paramref name="model"/> on every sample with <paramref name="tensors"/> added as graph outputs and keeps each
    /// tensor's min and max over all samples. The model is not changed; its external weights are read in place.
    /// </summary>
    public static ActivationRanges Calibrate(OnnxModel model, IReadOnlyCollection<string> tensors,
        IReadOnlyList<(string Name, OrtValue Value)[]> samples, string calibration, int threads = 0, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (samples.Count == 0) throw new InvalidArgumentException("calibration", "no calibration samples; give at least one");
        var proto = model.Proto.Clone();
        var outputs = new HashSet<string>(proto.Graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        var wanted = tensors.Distinct(StringComparer.Ordinal).ToList();
        foreach (var name in wanted.Where(n => !outputs.Contains(n)))
            proto.Graph.Output.Add(new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DT.Float } },
            });

        var min = new float[wanted.Count];
        var max = new float[wanted.Count];
        Array.Fill(min, float.PositiveInfinity);
        Array.Fill(max, float.NegativeInfinity);
        using (var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR })
        {
            // The calibration graph keeps the float ops the ranges are about: no fusion may hide an output.
            options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC;
            options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", model.External.BaseDirectory);
            using var session = new InferenceSession(proto.ToByteArray(), options);
            using var run = new RunOptions();
            foreach (var sample in samples)
            {
                cancellation.ThrowIfCancellationRequested();
                using var results = session.Run(run, sample.Select(s => s.Name).ToArray(), sample.Select(s => s.Value).ToArray(), wanted);
                for (int i = 0; i < wanted.Count; i++)
                {
                    var values = results[i].GetTensorDataAsSpan<float>();
                    if (values.Length == 0) continue;
                    min[i] = MathF.Min(min[i], System.Numerics.Tensors.TensorPrimitives.Min(values));
                    max[i] = MathF.Max(max[i], System.Numerics.Tensors.TensorPrimitives.Max(values));
                }
            }
        }
        var ranges = new Dictionary<string, ActivationRange>(StringComparer.Ordinal);
        for (int i = 0; i < wanted.Count; i++)
            if (float.IsFinite(min[i]) && float.IsFinite(max[i])) ranges[wanted[i]] = new ActivationRange(min[i], max[i]);
        return new ActivationRanges(ranges, calibration);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{_ranges.Count} activation ranges ({Calibration})");
}
