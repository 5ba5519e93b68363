using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Compression;

/// <summary>How far a compression has got: <see cref="Done"/> of <see cref="Total"/> weights encoded, the last being <see cref="Weight"/>.</summary>
public readonly record struct CompressionProgress(string Component, int Done, int Total, string Weight);

/// <summary>Options of <see cref="ModelCompressor.Compress(OnnxModel, Func{WeightUse, IWeightEncoder?}, ModelCompressionOptions?, IProgress{CompressionProgress}?, CancellationToken)"/>.</summary>
public sealed record ModelCompressionOptions
{
    public WeightSelection Selection { get; init; } = WeightSelection.Default;

    /// <summary>
    /// Rewrite Gemm(A, W, C; transB = 1, alpha = beta = 1) whose W is linearly quantized as MatMul(A, Wᵀ) + C, storing Wᵀ,
    /// so ONNX Runtime fuses DequantizeLinear → MatMul into MatMulNBits (it does not fuse DequantizeLinear → Gemm).
    /// </summary>
    public bool GemmAsMatMul { get; init; } = true;

    /// <summary>Weights encoded at once; the result does not depend on it.</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>The name reports and progress give the model (a folder component such as "unet"); "" for none.</summary>
    public string Component { get; init; } = "";
}

/// <summary>A compressed model and what was done to it. The model reads untouched external weights from the source's folder until saved.</summary>
public sealed class CompressedModel(OnnxModel model, CompressionReport report) : IDisposable
{
    public OnnxModel Model { get; } = model;
    public CompressionReport Report { get; } = report;

    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Compresses the weights of one ONNX model: chooses weights with a <see cref="WeightSelection"/>, asks a function for
/// each one's encoder (one spec for all, or a per-tensor recipe), encodes them in parallel, and replaces each
/// initializer by the encoder's initializers and nodes. The default-domain opset is raised when an encoder needs it
/// (<see cref="OpsetUpgrader"/>). The source model is never changed; the result is the same for any parallelism.
/// </summary>
public static class ModelCompressor
{
    /// <summary>Compresses every selected weight with one <paramref name="spec"/>.</summary>
    public static CompressedModel Compress(OnnxModel source, CompressionSpec spec, ModelCompressionOptions? options = null,
        IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var encoder = WeightEncoders.Create(spec);
        return Compress(source, _ => encoder, options, progress, cancellationToken);
    }

    /// <summary>
    /// Compresses each selected weight with the encoder <paramref name="encoderFor"/> returns for it; null leaves the
    /// weight as it is (reported as skipped), as does an encoder that cannot encode it.
    /// </summary>
    public static CompressedModel Compress(OnnxModel source, Func<WeightUse, IWeightEncoder?> encoderFor, ModelCompressionOptions? options = null,
        IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(encoderFor);
        options ??= new ModelCompressionOptions();
        if (options.MaxDegreeOfParallelism < 1)
            throw new InvalidArgumentException("--threads", $"{options.MaxDegreeOfParallelism} must be at least 1");
        string component = options.Component;

        var proto = source.Proto.Clone();
        var editor = new GraphEditor(proto.Graph);
        var sourceTensors = source.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);

        var plan = new List<PlannedWeight>();
        var skipped = new List<SkippedWeight>();
        foreach (var use in options.Selection.Select(editor))
        {
            var encoder = encoderFor(use);
            if (encoder is null)
            {
                skipped.Add(new SkippedWeight(component, use.Name, "no method chosen for it"));
                continue;
            }
            var planned = new PlannedWeight(use, encoder, use.OpType ?? "mixed", Transposed: false);
            if (options.GemmAsMatMul && encoder is LinearWeightEncoder && GemmRewritable(editor, use))
                planned = RewriteGemmsAsMatMul(editor, planned);
            if (encoder.CannotEncode(planned.Use) is { } why)
            {
                skipped.Add(new SkippedWeight(component, use.Name, $"{encoder.Description}: {why}"));
                continue;
            }
            plan.Add(planned);
        }

        var results = new EncodedResult[plan.Count];
        int done = 0;
        try
        {
            EncodeAll();
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            // Callers see the encoder's own error (an InvalidArgumentException naming the weight, say), not the wrapper.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }

        void EncodeAll() => Parallel.For(0, plan.Count,
            new ParallelOptions { MaxDegreeOfParallelism = options.MaxDegreeOfParallelism, CancellationToken = cancellationToken },
            i =>
            {
                var p = plan[i];
                var original = source.ReadAsFloat(sourceTensors[p.Use.Name]);
                if (p.Transposed) original = Transpose2D(original, (int)p.Use.Shape[1], (int)p.Use.Shape[0]);
                var encoded = p.Encoder.Encode(p.Use, original, LocalNames());
                double snr = WeightSnr.Db(original, encoded.Reconstructed);
                // Only the graph parts are kept: holding every reconstruction would hold a float copy of the whole model.
                results[i] = new EncodedResult(WithoutReconstruction(encoded), snr);
                progress?.Report(new CompressionProgress(component, Interlocked.Increment(ref done), plan.Count, p.Use.Name));
            });

        int opset = results.Select(r => r.Weight.MinimumOpset).DefaultIfEmpty(0).Max();
        if (OpsetUpgrader.Upgrade(proto, Math.Max(opset, OpsetUpgrader.DefaultOpset(proto)))) editor.Reindex();

        var tensors = new List<TensorCompression>();
        for (int i = 0; i < plan.Count; i++)
        {
            var (use, _, op, _) = plan[i];
            var (weight, snr) = results[i];
            MakeNamesUnique(weight, editor);
            editor.ReplaceInitializer(use.Name, weight.Nodes, weight.Initializers);
            long before = TensorData.RawByteCount(sourceTensors[use.Name]);
            tensors.Add(new TensorCompression(component, use.Name, op, use.Shape, weight.Method, weight.Bits, weight.Detail, before, weight.StoredBytes, snr));
        }
        if (!editor.IsTopologicallySorted) editor.SortTopologically();

        var report = new CompressionReport
        {
            Tensors = tensors,
            Skipped = skipped,
            ModelBytesBefore = InitializerBytes(source.Graph),
            ModelBytesAfter = InitializerBytes(proto.Graph),
        };
        return new CompressedModel(OnnxModel.FromProto(proto, source.External.BaseDirectory, source.File), report);
    }

    private sealed record PlannedWeight(WeightUse Use, IWeightEncoder Encoder, string Op, bool Transposed);

    private readonly record struct EncodedResult(EncodedWeight Weight, double SnrDb);

    private static EncodedWeight WithoutReconstruction(EncodedWeight w) => new()
    {
        OutputName = w.OutputName,
        Initializers = w.Initializers,
        Nodes = w.Nodes,
        Reconstructed = [],
        Method = w.Method,
        Bits = w.Bits,
        Detail = w.Detail,
        MinimumOpset = w.MinimumOpset,
    };

    private static long InitializerBytes(GraphProto graph) =>
        OnnxGraphs.AllInitializers(graph).Select(t => TensorData.RawByteCount(t)).Where(n => n > 0).Sum();

    /// <summary>
    /// Names for one encoder, free among themselves; clashes with the graph are settled afterwards in plan order
    /// (<see cref="MakeNamesUnique"/>), so parallel encoders never race for a name and the result stays deterministic.
    /// </summary>
    private static Func<string, string> LocalNames()
    {
        var taken = new HashSet<string>(StringComparer.Ordinal);
        return hint =>
        {
            string name = hint;
            for (int k = 1; !taken.Add(name); k++) name = $"{hint}_{k}";
            return name;
        };
    }

    /// <summary>Renames the encoded weight's new initializers, node outputs and node names that the graph already uses.</summary>
    private static void MakeNamesUnique(EncodedWeight weight, GraphEditor editor)
    {
        var renamed = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var t in weight.Initializers) renamed[t.Name] = editor.UniqueName(t.Name);
        foreach (var n in weight.Nodes)
        {
            foreach (var o in n.Output)
                if (o.Length > 0 && o != weight.OutputName) renamed[o] = editor.UniqueName(o);
            if (n.Name.Length > 0) n.Name = editor.UniqueName(n.Name);
        }
        foreach (var t in weight.Initializers) t.Name = renamed[t.Name];
        foreach (var n in weight.Nodes)
        {
            for (int i = 0; i < n.Input.Count; i++)
                if (renamed.TryGetValue(n.Input[i], out var to)) n.Input[i] = to;
            for (int i = 0; i < n.Output.Count; i++)
                if (renamed.TryGetValue(n.Output[i], out var to)) n.Output[i] = to;
        }
    }

    /// <summary>Whether every reader of the 2-D weight is a Gemm(A, W, C?) with transB = 1, transA = 0, alpha = beta = 1.</summary>
    private static bool GemmRewritable(GraphEditor editor, WeightUse use)
    {
        if (use.Shape.Count != 2 || use.OpType != "Gemm") return false;
        foreach (var node in editor.Consumers(use.Name))
        {
            if (node.OpType != "Gemm" || node.Input.Count < 2 || node.Input[1] != use.Name || node.Input[0] == use.Name) return false;
            if (node.Input.Count > 2 && node.Input[2] == use.Name) return false;
            foreach (var a in node.Attribute)
            {
                bool neutral = a.Name switch
                {
                    "transA" => a.I == 0,
                    "transB" => a.I == 1,
                    "alpha" or "beta" => a.F == 1f,
                    _ => false,
                };
                if (!neutral) return false;
            }
            if (!node.Attribute.Any(a => a.Name == "transB")) return false;
        }
        return true;
    }

    /// <summary>Gemm(A, W[N, K], C) → MatMul(A, Wᵀ[K, N]) then Add(C); the weight is transposed when it is read.</summary>
    private static PlannedWeight RewriteGemmsAsMatMul(GraphEditor editor, PlannedWeight planned)
    {
        var use = planned.Use;
        var gemms = editor.Consumers(use.Name);
        var replacements = new List<NodeProto>();
        var consumers = new List<WeightConsumer>();
        foreach (var gemm in gemms)
        {
            string output = gemm.Output[0];
            bool hasBias = gemm.Input.Count > 2 && gemm.Input[2].Length > 0;
            var matmul = new NodeProto { OpType = "MatMul", Name = gemm.Name };
            matmul.Input.Add(gemm.Input[0]);
            matmul.Input.Add(use.Name);
            if (!hasBias)
            {
                matmul.Output.Add(output);
                replacements.Add(matmul);
            }
            else
            {
                string product = editor.UniqueName(output + ".matmul");
                matmul.Output.Add(product);
                var add = new NodeProto { OpType = "Add", Name = editor.UniqueName(gemm.Name + ".bias") };
                add.Input.Add(product);
                add.Input.Add(gemm.Input[2]);
                add.Output.Add(output);
                replacements.Add(matmul);
                replacements.Add(add);
            }
        }
        editor.RemoveNodes(gemms);
        editor.AddNodes(replacements);
        foreach (var matmul in replacements.Where(n => n.OpType == "MatMul")) consumers.Add(new WeightConsumer(matmul.Name, "MatMul", 1));
        // The initializer keeps its [N, K] data until the encoded [K, N] form replaces it.
        var transposed = new WeightUse(use.Name, [use.Shape[1], use.Shape[0]], consumers);
        return planned with { Use = transposed, Op = "Gemm→MatMul", Transposed = true };
    }

    /// <summary>The transpose of a row-major [rows, columns] matrix.</summary>
    internal static float[] Transpose2D(float[] values, int rows, int columns)
    {
        var result = new float[values.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                result[c * rows + r] = values[r * columns + c];
        return result;
    }
}
