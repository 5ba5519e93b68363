using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Compression;

/// <summary>How much a component's output suffers when one weight alone is compressed at each candidate width.</summary>
/// <param name="MseByBits">Mean squared error of all outputs against the float32 outputs, per bits.</param>
public sealed record LayerSensitivity(string Name, long Parameters, IReadOnlyDictionary<int, double> MseByBits);

/// <summary>The planner's answer: bits per weight, the resulting average and the predicted output PSNR.</summary>
public sealed record MixedBitPlan(IReadOnlyDictionary<string, int> BitsByTensor, double AverageBits, double PredictedPsnrDb, double OutputPeak,
    IReadOnlyList<LayerSensitivity> Sensitivities)
{
    /// <summary>The plan as a recipe component: each weight gets <paramref name="baseSpec"/> with its bits.</summary>
    public ComponentRecipe ToRecipe(CompressionSpec baseSpec) => new()
    {
        Tensors = BitsByTensor.ToDictionary(p => p.Key, p => MixedBitPlanner.WithBits(baseSpec, p.Value), StringComparer.Ordinal),
        AverageBits = AverageBits,
        PredictedPsnrDb = double.IsFinite(PredictedPsnrDb) ? PredictedPsnrDb : null,
    };
}

/// <summary>
/// Mixed-bit planning after Apple's recipe, made cheap: (1) sensitivity — for every selected weight and candidate width,
/// the component's output error when only that weight is compressed, measured on a few fixed inputs; (2) allocation —
/// starting from the widest candidate, repeatedly narrow the weight whose narrowing adds the least output error per bit
/// saved, until the parameter-weighted average width reaches the target, or until the next step would drop the predicted
/// PSNR below the target. Errors of different weights are assumed to add (independent noise), so the predicted PSNR is
/// 10·log10(peak² / Σ mse) with peak = max |float32 output|.
/// <para>Speed: the weights become graph inputs of one session, so each trial is one run with one input swapped for its
/// reconstruction (which is exactly what the compressed graph computes), not a new session per trial.</para>
/// </summary>
public static class MixedBitPlanner
{
    /// <summary>The spec with its width set: palettize → bits; linear → int8 or int4 (keeping the sign choice).</summary>
    public static CompressionSpec WithBits(CompressionSpec spec, int bits) => spec.Method switch
    {
        CompressionMethod.Linear => spec with
        {
            Dtype = bits switch
            {
                8 => spec.Dtype is QuantizedType.UInt8 or QuantizedType.UInt4 ? QuantizedType.UInt8 : QuantizedType.Int8,
                4 => spec.Dtype is QuantizedType.UInt8 or QuantizedType.UInt4 ? QuantizedType.UInt4 : QuantizedType.Int4,
                _ => throw new InvalidArgumentException("--candidate-bits", $"linear quantization has 8 and 4 bits, not {bits}"),
            },
        },
        CompressionMethod.Palettize => spec with { Bits = bits },
        _ => throw new InvalidArgumentException("--method", "the mixed-bit planner palettizes or quantizes; pruning has no bit widths to mix"),
    };

    /// <summary>Measures every weight at every width in <paramref name="bits"/>.</summary>
    public static IReadOnlyList<LayerSensitivity> Measure(OnnxModel model, IReadOnlyList<WeightUse> weights, CompressionSpec baseSpec,
        IReadOnlyList<int> bits, CalibrationInputs inputs, int threads = 0, IProgress<string>? progress = null) =>
        MeasureWithPeak(model, weights, baseSpec, bits, inputs, threads, progress).Layers;

    internal static (IReadOnlyList<LayerSensitivity> Layers, double Peak) MeasureWithPeak(OnnxModel model, IReadOnlyList<WeightUse> weights,
        CompressionSpec baseSpec, IReadOnlyList<int> bits, CalibrationInputs inputs, int threads, IProgress<string>? progress)
    {
        if (weights.Count == 0) throw new InvalidArgumentException("--mixed-bit", "no weight is selected for compression; lower --min-elements or widen the selection");
        var encoders = bits.Distinct().OrderDescending().ToDictionary(b => b, b => WeightEncoders.Create(WithBits(baseSpec, b).Validate()));
        var probe = ProbeModel(model, weights);
        using var options = new SessionOptions { IntraOpNumThreads = threads, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = new InferenceSession(probe, options);

        var originals = weights.Select(w => model.ReadAsFloat(model.Graph.Initializer.First(t => t.Name == w.Name))).ToArray();
        var weightValues = weights.Select((w, i) => OrtValue.CreateTensorValueFromMemory(originals[i], w.Shape.ToArray())).ToArray();
        try
        {
            var reference = RunAll(session, inputs, weights, weightValues);
            double peak = reference.SelectMany(r => r).Select(v => Math.Abs((double)v)).DefaultIfEmpty(0).Max();
            var layers = new List<LayerSensitivity>();
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < weights.Count; i++)
            {
                var mse = new Dictionary<int, double>();
                foreach (var (b, encoder) in encoders)
                {
                    if (encoder.CannotEncode(weights[i]) is { } reason)
                        throw new InvalidArgumentException("--mixed-bit", $"{weights[i].Name}: {reason}; exclude it with --exclude-name");
                    var encoded = encoder.Encode(weights[i], originals[i], hint => hint);
                    using var trial = OrtValue.CreateTensorValueFromMemory(encoded.Reconstructed, weights[i].Shape.ToArray());
                    var values = (OrtValue[])weightValues.Clone();
                    values[i] = trial;
                    mse[b] = Mse(reference, RunAll(session, inputs, weights, values));
                }
                layers.Add(new LayerSensitivity(weights[i].Name, weights[i].ElementCount, mse));
                progress?.Report($"sensitivity {i + 1}/{weights.Count} {weights[i].Name} ({watch.Elapsed.TotalSeconds:0} s)");
            }
            return (layers, peak);
        }
        finally
        {
            foreach (var v in weightValues) v.Dispose();
        }
    }

    /// <summary>
    /// Chooses bits per weight. Exactly one of <paramref name="targetBits"/> (parameter-weighted average over the weights,
    /// e.g. 4.0) and <paramref name="targetPsnrDb"/> must be given.
    /// </summary>
    public static MixedBitPlan Allocate(IReadOnlyList<LayerSensitivity> layers, double peak, double? targetBits, double? targetPsnrDb)
    {
        if (targetBits.HasValue == targetPsnrDb.HasValue)
            throw new InvalidArgumentException("--target-bits", "give exactly one of --target-bits and --target-psnr");
        if (layers.Count == 0) throw new InvalidArgumentException("--mixed-bit", "no weights to plan");
        var widths = layers[0].MseByBits.Keys.OrderDescending().ToArray();
        double total = layers.Sum(l => (double)l.Parameters);
        if (targetBits is { } tb && (tb < widths[^1] || tb > widths[0] || double.IsNaN(tb)))
            throw new InvalidArgumentException("--target-bits", $"{tb} is outside the candidate widths [{widths[^1]}, {widths[0]}]");
        if (targetPsnrDb is { } tp && (double.IsNaN(tp) || tp <= 0))
            throw new InvalidArgumentException("--target-psnr", $"{tp} must be a positive number of dB, e.g. 35");

        var level = new int[layers.Count]; // index into widths
        double noise = layers.Sum(l => l.MseByBits[widths[0]]);
        double bitSum = total * widths[0];
        double Psnr(double mse) => mse <= 0 ? double.PositiveInfinity : 10 * Math.Log10(peak * peak / mse);

        while (true)
        {
            if (targetBits is { } target && bitSum / total <= target + 1e-9) break;
            int best = -1;
            double bestCost = double.PositiveInfinity;
            for (int i = 0; i < layers.Count; i++)
            {
                if (level[i] + 1 >= widths.Length) continue;
                double added = layers[i].MseByBits[widths[level[i] + 1]] - layers[i].MseByBits[widths[level[i]]];
                double saved = layers[i].Parameters * (double)(widths[level[i]] - widths[level[i] + 1]);
                double cost = Math.Max(0, added) / saved;
                if (cost < bestCost) { bestCost = cost; best = i; }
            }
            if (best < 0) break;
            double nextNoise = noise - layers[best].MseByBits[widths[level[best]]] + layers[best].MseByBits[widths[level[best] + 1]];
            if (targetPsnrDb is { } psnr && Psnr(nextNoise) < psnr) break;
            bitSum -= layers[best].Parameters * (double)(widths[level[best]] - widths[level[best] + 1]);
            noise = nextNoise;
            level[best]++;
        }
        var bitsByTensor = layers.Select((l, i) => (l.Name, widths[level[i]])).ToDictionary(p => p.Name, p => p.Item2, StringComparer.Ordinal);
        return new MixedBitPlan(bitsByTensor, bitSum / total, Psnr(noise), peak, layers);
    }

    /// <summary>Measures and allocates in one go.</summary>
    public static MixedBitPlan Plan(OnnxModel model, IReadOnlyList<WeightUse> weights, CompressionSpec baseSpec, IReadOnlyList<int> bits,
        CalibrationInputs inputs, double? targetBits, double? targetPsnrDb, int threads = 0, IProgress<string>? progress = null)
    {
        var (layers, peak) = MeasureWithPeak(model, weights, baseSpec, bits, inputs, threads, progress);
        return Allocate(layers, peak, targetBits, targetPsnrDb);
    }

    /// <summary>The model with the planned weights turned into graph inputs and every other initializer inline.</summary>
    private static byte[] ProbeModel(OnnxModel model, IReadOnlyList<WeightUse> weights)
    {
        var proto = model.Proto.Clone();
        var asInputs = new HashSet<string>(weights.Select(w => w.Name), StringComparer.Ordinal);
        var kept = new List<TensorProto>();
        foreach (var t in proto.Graph.Initializer)
        {
            if (asInputs.Contains(t.Name))
            {
                var input = new ValueInfoProto { Name = t.Name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = t.DataType, Shape = new TensorShapeProto() } } };
                foreach (var d in t.Dims) input.Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
                proto.Graph.Input.Add(input);
                continue;
            }
            kept.Add(model.Inlined(t));
        }
        proto.Graph.Initializer.Clear();
        proto.Graph.Initializer.AddRange(kept);
        return proto.ToByteArray();
    }

    private static List<float[]> RunAll(InferenceSession session, CalibrationInputs inputs, IReadOnlyList<WeightUse> weights, OrtValue[] weightValues)
    {
        var results = new List<float[]>();
        using var runOptions = new RunOptions();
        foreach (var sample in inputs.Samples)
        {
            var names = sample.Select(s => s.Name).Concat(weights.Select(w => w.Name)).ToArray();
            var values = sample.Select(s => s.Value).Concat(weightValues).ToArray();
            using var outputs = session.Run(runOptions, names, values, session.OutputNames);
            foreach (var o in outputs) results.Add(o.GetTensorDataAsSpan<float>().ToArray());
        }
        return results;
    }

    private static double Mse(List<float[]> reference, List<float[]> candidate)
    {
        double sum = 0;
        long count = 0;
        for (int k = 0; k < reference.Count; k++)
            for (int i = 0; i < reference[k].Length; i++)
            {
                double d = reference[k][i] - candidate[k][i];
                sum += d * d;
                count++;
            }
        return count == 0 ? 0 : sum / count;
    }
}

/// <summary>Mixed-bit recipes for a model folder (each component planned on its own) or a single model file.</summary>
public static class MixedBitRecipes
{
    /// <param name="components">Folder components to plan (null: all with a model.onnx).</param>
    /// <param name="spatialSize">Size of symbolic spatial dimensions of the calibration inputs (latent height/width).</param>
    public static CompressionRecipe Plan(string source, CompressionSpec baseSpec, IReadOnlyList<int> bits, WeightSelection selection,
        IReadOnlyList<string>? components, int samples, double? targetBits, double? targetPsnrDb, int spatialSize, IProgress<string>? progress = null)
    {
        if (samples < 1) throw new InvalidArgumentException("--calibration-samples", $"{samples} must be at least 1");
        if (spatialSize < 1) throw new InvalidArgumentException("--calibration-size", $"{spatialSize} must be at least 1");
        var files = Directory.Exists(source)
            ? (components ?? ModelFolderCompressor.ComponentsOf(source)).Select(c => (c, Path.Combine(source, c, ModelFolderCompressor.ModelFileName))).ToList()
            : [(CompressionRecipe.SingleModelComponent, source)];
        var recipe = new CompressionRecipe
        {
            Description = FormattableString.Invariant($"mixed-bit {baseSpec.Method.ToString().ToLowerInvariant()} over {{{string.Join(",", bits)}}} bits, ") +
                (targetBits is { } tb ? FormattableString.Invariant($"target {tb} bits") : FormattableString.Invariant($"target {targetPsnrDb} dB")),
        };
        foreach (var (component, file) in files)
        {
            if (!File.Exists(file)) throw new InvalidArgumentException("--components", $"{file} does not exist; list components that have a model.onnx");
            using var model = OnnxModel.Load(file);
            var weights = selection.Select(model.Graph);
            if (weights.Count == 0) continue;
            using var inputs = CalibrationInputs.For(model.Graph, samples, spatialSize);
            var perComponent = progress is null ? null : new Progress<string>(m => progress.Report($"{component}: {m}"));
            var plan = MixedBitPlanner.Plan(model, weights, baseSpec, bits, inputs, targetBits, targetPsnrDb, progress: perComponent);
            recipe.Components[component] = plan.ToRecipe(baseSpec);
            progress?.Report(FormattableString.Invariant($"{component}: {plan.AverageBits:0.00} bits average, predicted output PSNR {plan.PredictedPsnrDb:0.0} dB"));
        }
        if (recipe.Components.Count == 0) throw new InvalidArgumentException("--mixed-bit", "no weight is selected in any component; widen the selection");
        return recipe;
    }
}
