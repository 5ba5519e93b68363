using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>How EdgeDiffusion creates ONNX Runtime sessions. Defaults suit a CPU-only desktop; the CLI maps its options here.</summary>
public sealed record SessionSettings
{
    public static SessionSettings Default { get; } = new();

    /// <summary>Threads for one operator; 0 lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>
    /// When set, ONNX Runtime writes a JSON trace with this prefix (see the profile verb); the model's folder name is
    /// appended (<c>PREFIX_unet_…json</c>) so the traces of a pipeline's components can be told apart.
    /// </summary>
    public string? ProfilePrefix { get; init; }

    /// <summary>The execution providers and devices sessions run on (<see cref="DeviceSelector"/>); CPU by default.</summary>
    public ExecutionPlan Execution { get; init; } = ExecutionPlan.Cpu;

    /// <summary>Extra session config entries (key = value), applied last.</summary>
    public IReadOnlyDictionary<string, string> ConfigEntries { get; init; } = new Dictionary<string, string>();

    /// <summary>Symbolic dimensions fixed to a size (AddFreeDimensionOverrideByName), when the shapes a session will see are known.</summary>
    public IReadOnlyDictionary<string, long> FreeDimensions { get; init; } = new Dictionary<string, long>();

    /// <summary>ONNX Runtime's CPU memory arena (on by default in ONNX Runtime).</summary>
    public bool CpuMemoryArena { get; init; } = true;

    /// <summary>
    /// ONNX Runtime's memory pattern planning. Off here (ONNX Runtime's default is on): measured on the UNet at 64×64
    /// latents, it doubled peak RSS and made the second run as slow as the first, for no steady-state gain (docs/benchmarks.md).
    /// </summary>
    public bool MemoryPattern { get; init; }

    /// <summary>
    /// All sessions allocate from one CPU arena registered in ONNX Runtime's environment (session.use_env_allocators),
    /// instead of one arena each, so memory one component freed can serve the next.
    /// </summary>
    public bool SharedAllocator { get; init; }

    /// <summary>Where optimized graphs and prepacked weights are kept between runs; null builds every session from scratch.</summary>
    public SessionCache? Cache { get; init; }

    /// <summary>
    /// How attention runs: <see cref="AttentionKernel.Fused"/> rewrites unmasked attention into ONNX Runtime's
    /// MultiHeadAttention (flash attention on the CPU, no score matrices held) when the session is made; the folder is not
    /// changed. <see cref="AttentionKernel.Unfused"/> runs the graph's MatMul → Softmax → MatMul as written.
    /// </summary>
    public AttentionKernel Attention { get; init; } = AttentionKernel.Fused;

    /// <summary>How compressed weights are expanded (only matters for models that hold compressed weights).</summary>
    public DecompressionMode Decompression { get; init; } = DecompressionMode.Auto;

    /// <summary>
    /// The ONNX Runtime config entries that make <paramref name="mode"/> happen. jit: constant folding off, so
    /// look-up-table and scatter subgraphs on initializers are not expanded to float32 at load (DequantizeLinear is never
    /// folded by default, and DequantizeLinear → MatMul becomes the fused MatMulNBits). load: QDQ handling off, so every
    /// decompression subgraph, DequantizeLinear included, is folded into float32 initializers once, at session creation.
    /// </summary>
    public static IReadOnlyDictionary<string, string> DecompressionEntries(DecompressionMode mode) => mode switch
    {
        DecompressionMode.Jit or DecompressionMode.Auto => new Dictionary<string, string> { ["optimization.disable_specified_optimizers"] = "ConstantFolding" },
        DecompressionMode.Int8 => new Dictionary<string, string> { [SessionFactory.Int8ModeMarker] = "1" },
        _ => new Dictionary<string, string> { ["session.disable_quant_qdq"] = "1", [SessionFactory.LoadModeMarker] = "1" },
    };
}

/// <summary>How a session runs attention.</summary>
public enum AttentionKernel
{
    /// <summary>As the graph spells it: MatMul, Softmax, MatMul, holding every [S, S] score matrix.</summary>
    Unfused,

    /// <summary>One com.microsoft.MultiHeadAttention per attention (see <see cref="AttentionFusion"/>).</summary>
    Fused,
}

/// <summary>When compressed weights become float32 (or int8).</summary>
public enum DecompressionMode
{
    /// <summary>
    /// The default: <see cref="Int8"/> for a compressed model that carries calibrated activation ranges (what
    /// <c>compress</c> writes unless told not to calibrate), else <see cref="Jit"/>.
    /// </summary>
    Auto,

    /// <summary>Weights stay compressed in memory; each layer's weight is decompressed when it runs, on every run.</summary>
    Jit,

    /// <summary>Weights are decompressed once, when the session is created: float32 memory and speed, compressed disk size.</summary>
    Load,

    /// <summary>
    /// Weights of every Conv / MatMul become int8 per channel when the session is created (palettes and int4 included,
    /// a few weights at a time, never a float32 copy) and the layers run on ONNX Runtime's integer kernels with the
    /// model's calibrated activation scales (<see cref="Int8Serving"/>); a model without ranges runs as <see cref="Jit"/>.
    /// </summary>
    Int8,
}

/// <summary>Creates ONNX Runtime sessions from model files, with ONNX Runtime's failures turned into typed errors naming the file.</summary>
public static class SessionFactory
{
    /// <summary>Our own config entry (ONNX Runtime ignores unknown keys) marking a compressed model in load mode.</summary>
    internal const string LoadModeMarker = "edgediffusion.expand_weights";

    /// <summary>Our own config entry marking a compressed model served as int8 (<see cref="Int8Serving"/>).</summary>
    internal const string Int8ModeMarker = "edgediffusion.int8_weights";

    /// <summary>Our own config entry asking for <see cref="AttentionFusion"/> (so the cache keys fused and unfused sessions apart).</summary>
    internal const string FusedAttentionMarker = "edgediffusion.fused_attention";

    public static InferenceSession Create(string modelPath, SessionSettings? settings = null)
    {
        settings = Resolve(modelPath, settings ?? SessionSettings.Default);
        // ONNX Runtime cannot save a graph holding compiled partitions, so such sessions bypass the cache; so do expanded
        // (load-mode) compressed models, whose float32 weights would only be cached again in full.
        bool expands = settings.Decompression == DecompressionMode.Load && settings.ConfigEntries.ContainsKey(LoadModeMarker);
        return settings.Cache is { } cache && File.Exists(modelPath) && !settings.Execution.CompilesGraph && !expands
            ? cache.CreateResolved(modelPath, settings, out _)
            : Create(modelPath, settings, optimizedModelPath: null);
    }

    /// <summary>
    /// The settings a session for <paramref name="modelPath"/> is really made with: the decompression mode's entries and
    /// the attention marker added (idempotent). Both the factory and <see cref="SessionCache"/> go through it, so a cached
    /// session and a plain one of the same settings compute the same graph.
    /// </summary>
    internal static SessionSettings Resolve(string modelPath, SessionSettings settings)
    {
        settings = WithDecompression(modelPath, settings);
        if (settings.Attention == AttentionKernel.Fused && !settings.ConfigEntries.ContainsKey(FusedAttentionMarker))
            settings = settings with { ConfigEntries = new Dictionary<string, string>(settings.ConfigEntries) { [FusedAttentionMarker] = "1" } };
        return settings;
    }

    /// <summary>
    /// Adds the decompression mode's config entries when the model holds compressed weights (so they are part of the
    /// cache key too); uncompressed models keep ONNX Runtime's full optimizer. Explicit config entries win.
    /// </summary>
    public static SessionSettings WithDecompression(string modelPath, SessionSettings settings)
    {
        if (!File.Exists(modelPath) || Outline(modelPath) is not { } outline || !IsCompressed(outline.Graph, modelPath)) return settings;
        var mode = settings.Decompression;
        if (mode is DecompressionMode.Auto or DecompressionMode.Int8)
            mode = Int8Serving.Applies(outline.Graph, outline.Metadata) ? DecompressionMode.Int8 : DecompressionMode.Jit;
        var entries = new Dictionary<string, string>(SessionSettings.DecompressionEntries(mode));
        // Int8 serving adds the zero points the exact mode needs; a file's graph must have them already.
        if (mode == DecompressionMode.Int8 || (mode != DecompressionMode.Load && PreciseInt8.Supports(outline.Graph)))
            entries[PreciseInt8.ConfigEntry] = "1";
        foreach (var (k, v) in settings.ConfigEntries) entries[k] = v;
        return settings with { ConfigEntries = entries };
    }

    /// <summary>The model's folder name (unet, text_encoder …), or its file name without extension for a lone file.</summary>
    internal static string ComponentName(string modelPath)
    {
        string full = Path.GetFullPath(modelPath);
        string name = Path.GetFileNameWithoutExtension(full) == "model" ? Path.GetFileName(Path.GetDirectoryName(full)) ?? "model" : Path.GetFileNameWithoutExtension(full);
        return new string(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '.' ? c : '_').ToArray());
    }

    /// <summary>
    /// The int8-served model as bytes, with the managed model it was built from already collected: otherwise the
    /// compressed model, its int8 re-encoding and the serialized bytes are all alive while ONNX Runtime makes its own copy
    /// and prepacks it (6-bit SD1.5, one 512² generation: peak RSS 6.96 GiB before, 5.21 GiB after; docs/benchmarks.md).
    /// </summary>
    private static byte[]? Int8ModelBytes(string modelPath, int threads, bool fuseAttention)
    {
        byte[]? bytes = Int8Bytes(modelPath, threads, fuseAttention);
        if (bytes is not null) ReleaseManagedCopies();
        return bytes;

        static byte[]? Int8Bytes(string modelPath, int threads, bool fuseAttention)
        {
            if (Int8Serving.TryCreate(modelPath, threads) is not { } int8) return null;
            if (fuseAttention) AttentionFusion.Fuse(int8);
            return Google.Protobuf.MessageExtensions.ToByteArray(int8);
        }
    }

    /// <summary>A compacting, decommitting collection, so the large model buffers just dropped go back to the OS now.</summary>
    private static void ReleaseManagedCopies()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>The model with its attention fused, as bytes; null when it has none to fuse (then the file loads as it is).</summary>
    private static byte[]? FusedAttentionModel(string modelPath)
    {
        // The outline test is cheap (no weights read); only models with a Softmax are loaded and rewritten.
        if (!Onnx.OnnxModel.ReadGraphOutline(modelPath).Node.Any(n => n.OpType == "Softmax")) return null;
        using var model = Onnx.OnnxModel.Load(modelPath);
        return AttentionFusion.Fuse(model.Proto) > 0 ? Google.Protobuf.MessageExtensions.ToByteArray(model.Proto) : null;
    }

    private static (Onnx.Protobuf.GraphProto Graph, IReadOnlyDictionary<string, string> Metadata)? Outline(string modelPath)
    {
        try
        {
            // Runs before every session: the outline skips the weights, which a full load would read and copy.
            var graph = Onnx.OnnxModel.ReadOutline(modelPath, out var metadata);
            return (graph, metadata);
        }
        catch (Onnx.OnnxFormatException)
        {
            return null; // ONNX Runtime reports the problem with its own words when it loads the file
        }
    }

    private static bool IsCompressed(Onnx.Protobuf.GraphProto outline, string modelPath) =>
        Onnx.ModelInspector.DetectCompression(outline, modelPath).Compressed;

    /// <summary>Builds a session without the cache; with <paramref name="optimizedModelPath"/>, ONNX Runtime also saves its optimized graph there.</summary>
    internal static InferenceSession Create(string modelPath, SessionSettings settings, string? optimizedModelPath)
    {
        if (!File.Exists(modelPath))
            throw new Onnx.OnnxFormatException(modelPath, "file not found; check the model folder");
        try
        {
            return CreateOn(modelPath, settings, optimizedModelPath);
        }
        catch (Onnx.OnnxFormatException e) when (settings.Execution is { IsCpuOnly: false, FallbackToCpu: true } plan)
        {
            // A provider that is present can still fail to start (driver, unsupported model): --fallback cpu covers that too.
            plan.Warn?.Invoke($"{modelPath}: {plan.Signature} failed ({e.Problem}); continuing on the CPU (--fallback cpu)");
            return CreateOn(modelPath, settings with { Execution = ExecutionPlan.Cpu }, optimizedModelPath);
        }
    }

    private static InferenceSession CreateOn(string modelPath, SessionSettings settings, string? optimizedModelPath)
    {
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = settings.OptimizationLevel,
            IntraOpNumThreads = settings.IntraOpThreads,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            EnableCpuMemArena = settings.CpuMemoryArena,
            EnableMemoryPattern = settings.MemoryPattern,
        };
        if (optimizedModelPath is not null) options.OptimizedModelFilePath = optimizedModelPath;
        if (settings.SharedAllocator)
        {
            SharedCpuArena.EnsureRegistered();
            options.AddSessionConfigEntry("session.use_env_allocators", "1");
        }
        foreach (var (name, value) in settings.FreeDimensions) options.AddFreeDimensionOverrideByName(name, value);
        if (settings.ProfilePrefix is not null)
        {
            // The prefix must be set before profiling is enabled: the C# setter of EnableProfiling passes the prefix
            // current at that moment to ONNX Runtime, which would otherwise write onnxruntime_profile__*.json into the
            // working directory.
            options.ProfileOutputPathPrefix = settings.ProfilePrefix + "_" + ComponentName(modelPath);
            options.EnableProfiling = true;
        }
        foreach (var (key, value) in settings.ConfigEntries) options.AddSessionConfigEntry(key, value);
        WeightExpansion? expansion = null;
        try
        {
            settings.Execution.Apply(options);
            if (optimizedModelPath is null && settings.ConfigEntries.ContainsKey(LoadModeMarker)
                && (expansion = WeightExpansion.TryCreate(modelPath, settings.IntraOpThreads)) is not null)
            {
                expansion.AddTo(options);
                return new ExpandedWeightsSession(expansion.Model, options, expansion);
            }
            bool fuseAttention = settings.ConfigEntries.ContainsKey(FusedAttentionMarker);
            if (settings.ConfigEntries.ContainsKey(Int8ModeMarker) && Int8ModelBytes(modelPath, settings.IntraOpThreads, fuseAttention) is { } int8)
            {
                options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
                var session = new InferenceSession(int8, options);
                int8 = null;
                ReleaseManagedCopies(); // the serialized model ONNX Runtime has copied
                return session;
            }
            if (fuseAttention && FusedAttentionModel(modelPath) is { } fused)
            {
                options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
                return new InferenceSession(fused, options);
            }
            return new InferenceSession(modelPath, options);
        }
        catch (OnnxRuntimeException e)
        {
            expansion?.Dispose();
            throw new Onnx.OnnxFormatException(modelPath, $"ONNX Runtime cannot load it: {e.Message.Split('\n')[0]}", e);
        }
    }
}

/// <summary>The one CPU arena registered in ONNX Runtime's environment for sessions that share it (once per process).</summary>
internal static class SharedCpuArena
{
    private static readonly Lazy<bool> Registered = new(() =>
    {
        using var memory = new OrtMemoryInfo(OrtMemoryInfo.allocatorCPU, OrtAllocatorType.ArenaAllocator, 0, OrtMemType.Default);
        using var arena = new OrtArenaCfg(0, -1, -1, -1);
        OrtEnv.Instance().CreateAndRegisterAllocator(memory, arena);
        return true;
    });

    public static void EnsureRegistered() => _ = Registered.Value;
}
