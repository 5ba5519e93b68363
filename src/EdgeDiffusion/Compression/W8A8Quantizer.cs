using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>Options of <see cref="W8A8Quantizer"/>.</summary>
public sealed record W8A8Options
{
    /// <summary>
    /// Layers kept float, as wildcards over weight and node names. The default is what NVIDIA ModelOpt leaves float in
    /// diffusion UNets (time embedding, conv_in, conv_out, conv_shortcut), plus the names tiny-shapes' export gives them
    /// (time.*, temb, skip); softmax, norms and attention's activation × activation products are never quantized.
    /// </summary>
    public IReadOnlyList<string> KeepFloat { get; init; } = DefaultKeepFloat;

    public static IReadOnlyList<string> DefaultKeepFloat { get; } =
        ["*time_emb*", "*time_embedding*", "time.*", "*temb*", "*conv_in*", "*conv_out*", "*conv_shortcut*", "*skip*"];

    /// <summary>Weights with fewer elements stay float (as for weight-only compression).</summary>
    public long MinimumElements { get; init; } = 2048;

    /// <summary>Weights encoded at once.</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>The component name reports use ("unet").</summary>
    public string Component { get; init; } = "";
}

/// <summary>A W8A8 model: the compressed graph, the weight report and which layers compute in int8.</summary>
public sealed class W8A8Model(CompressedModel model, ActivationQuantizationResult layers) : IDisposable
{
    public CompressedModel Compressed { get; } = model;
    public ActivationQuantizationResult Layers { get; } = layers;

    public void Dispose() => Compressed.Dispose();
}

/// <summary>
/// Static W8A8 quantization: int8 per-output-channel weights (<see cref="LinearWeightEncoder"/>) for every Conv /
/// MatMul / Gemm layer not kept float, and uint8 activations with scales from calibrated <see cref="ActivationRanges"/>
/// (<see cref="ActivationQuantizer"/>), so ONNX Runtime runs QLinearConv and MatMulIntegerToFloat (VNNI where the CPU
/// has it). The ranges go into the model's metadata with what they were measured on.
/// </summary>
public static class W8A8Quantizer
{
    /// <summary>Model metadata key of the W8A8 recipe: calibration set, kept-float patterns, int8 and float layers.</summary>
    public const string RecipeKey = "edgediffusion.w8a8_recipe";

    private static readonly CompressionSpec WeightSpec = new()
    {
        Method = CompressionMethod.Linear,
        Dtype = QuantizedType.Int8,
        Symmetric = true,
        Granularity = QuantizationGranularity.PerChannel,
    };

    /// <summary>The weights W8A8 quantizes: read by Conv, MatMul or Gemm, large enough, not matching <see cref="W8A8Options.KeepFloat"/>.</summary>
    public static IReadOnlyList<WeightUse> Candidates(GraphProto graph, W8A8Options options)
    {
        var selection = new WeightSelection { MinimumElements = options.MinimumElements, IncludeOpTypes = ["Conv", "MatMul", "Gemm"] };
        var keep = WeightSelection.WildcardRegex(options.KeepFloat);
        return [.. selection.Select(graph).Where(u => keep is null || !(keep.IsMatch(u.Name) || u.Consumers.Any(c => keep.IsMatch(c.NodeName))))];
    }

    /// <summary>The activations calibration must measure for <paramref name="weights"/>: their layers' inputs, and Conv outputs.</summary>
    public static IReadOnlyList<string> CalibrationTensors(GraphProto graph, IReadOnlyList<WeightUse> weights)
    {
        var names = new HashSet<string>(weights.Select(w => w.Name), StringComparer.Ordinal);
        var result = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.OpType is not ("Conv" or "MatMul" or "Gemm") || node.Input.Count < 2 || !names.Contains(node.Input[1])) continue;
            if (seen.Add(node.Input[0])) result.Add(node.Input[0]);
            if (node.OpType == "Conv" && seen.Add(node.Output[0])) result.Add(node.Output[0]);
        }
        return result;
    }

    /// <summary>The activation ranges of the layers W8A8 would quantize in <paramref name="model"/>, measured on <paramref name="set"/>.</summary>
    public static ActivationRanges Calibrate(OnnxModel model, CalibrationSet set, W8A8Options? options = null, CancellationToken cancellationToken = default)
    {
        var weights = Candidates(model.Graph, options ?? new W8A8Options());
        return ActivationRanges.Calibrate(model, CalibrationTensors(model.Graph, weights), set.Samples, set.Description, 0, cancellationToken);
    }

    /// <summary>Quantizes <paramref name="source"/> with <paramref name="ranges"/> measured on it (see <see cref="CalibrationTensors"/>).</summary>
    public static W8A8Model Quantize(OnnxModel source, ActivationRanges ranges, W8A8Options? options = null,
        IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(ranges);
        options ??= new W8A8Options();
        var chosen = new HashSet<string>(Candidates(source.Graph, options).Select(u => u.Name), StringComparer.Ordinal);
        var encoder = new LinearWeightEncoder(WeightSpec);
        var compressed = ModelCompressor.Compress(source, use => chosen.Contains(use.Name) ? encoder : null,
            new ModelCompressionOptions
            {
                Selection = new WeightSelection { MinimumElements = options.MinimumElements, IncludeOpTypes = ["Conv", "MatMul", "Gemm"] },
                MaxDegreeOfParallelism = options.MaxDegreeOfParallelism,
                Component = options.Component,
            }, progress, cancellationToken);
        try
        {
            var layers = ActivationQuantizer.Apply(compressed.Model.Graph, ranges, compressed.Model.ReadAsFloat);
            ranges.WriteTo(compressed.Model.Proto);
            // The recipe: which layers compute in int8, which stay float and why, and the patterns that kept them.
            compressed.Model.Proto.MetadataProps.Add(new StringStringEntryProto
            {
                Key = RecipeKey,
                Value = System.Text.Json.JsonSerializer.Serialize(new
                {
                    calibration = ranges.Calibration,
                    keep_float = options.KeepFloat,
                    w8a8 = layers.Quantized,
                    left_float = layers.LeftFloat.Select(l => new { node = l.Node, reason = l.Reason }),
                }),
            });
            return new W8A8Model(compressed, layers);
        }
        catch
        {
            compressed.Dispose();
            throw;
        }
    }

    /// <summary>
    /// W8A8-quantizes the chosen components of a model folder into <paramref name="output"/> (the others copied), each
    /// calibrated on the samples <paramref name="calibration"/> gives for it (the UNet's own trajectories from
    /// <see cref="CalibrationTrajectories"/>, or fixed inputs from <see cref="CalibrationInputs"/> for random-weight models).
    /// </summary>
    public static CompressionReport QuantizeFolder(string source, string output, Func<string, OnnxModel, CalibrationSet> calibration,
        W8A8Options? options = null, IReadOnlyList<string>? components = null, bool overwrite = false,
        IProgress<string>? log = null, IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new W8A8Options();
        return ModelFolderCompressor.TransformFolder(source, output, (component, loaded) =>
        {
            var ranges = Calibrate(loaded, calibration(component, loaded), options, cancellationToken);
            var model = Quantize(loaded, ranges, options with { Component = component }, progress, cancellationToken);
            log?.Report($"{component}: {model.Layers.Quantized.Count} layers W8A8, {model.Layers.LeftFloat.Count} left float; calibrated on {ranges.Calibration}");
            return model.Compressed;
        }, new FolderCompressionOptions { Components = components ?? ["unet"], Overwrite = overwrite }, cancellationToken);
    }
}

/// <summary>Calibration samples (graph inputs by name) and what they are.</summary>
public sealed record CalibrationSet(IReadOnlyList<(string Name, Microsoft.ML.OnnxRuntime.OrtValue Value)[]> Samples, string Description);
