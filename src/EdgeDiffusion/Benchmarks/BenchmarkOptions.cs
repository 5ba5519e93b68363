using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Benchmarks;

/// <summary>What <see cref="ComponentBenchmark.Run"/> measures and where it keeps its random-weight model folders.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>tiny, sd15, sd21, sd-turbo, cascade-tiny or cascade-lite.</summary>
    public required string Arch { get; init; }

    /// <summary>Image side in pixels; null takes the architecture's own (512 for sd15).</summary>
    public int? Resolution { get; init; }

    public int Runs { get; init; } = 3;

    /// <summary>Untimed runs first; the first of them is profiled to count the component's operations (0: not counted).</summary>
    public int Warmup { get; init; } = 1;

    /// <summary>Denoising steps of the composed end-to-end figure (Stable Cascade: prior steps); null takes the architecture's usual count.</summary>
    public int? Steps { get; init; }

    /// <summary>Stable Cascade decoder (stage B) steps of the composed end-to-end figure; null: 10.</summary>
    public int? DecoderSteps { get; init; }

    /// <summary>Also time one whole generation through the pipeline (SD architectures), after the components.</summary>
    public bool EndToEnd { get; init; }

    /// <summary>All sessions allocate from one CPU arena registered in ONNX Runtime's environment (<see cref="SessionSettings.SharedAllocator"/>).</summary>
    public bool SharedAllocator { get; init; }

    /// <summary>METHOD:BITS/DTYPE (palettize:6, linear:int8, linear:int4, prune:0.5); null benchmarks the float32 folder.</summary>
    public string? Compression { get; init; }

    public DecompressionMode Decompression { get; init; } = DecompressionMode.Auto;

    /// <summary>Fused (MultiHeadAttention, the default) or the graph's unfused MatMul → Softmax → MatMul.</summary>
    public AttentionKernel Attention { get; init; } = AttentionKernel.Fused;

    /// <summary>Where model folders are built once and reused (one subfolder per architecture and compression).</summary>
    public string Directory { get; init; } = DefaultDirectory;

    public int IntraOpThreads { get; init; }

    /// <summary>Where the sessions run (--device/--ep); CPU by default.</summary>
    public ExecutionPlan Execution { get; init; } = ExecutionPlan.Cpu;

    public GraphOptimizationLevel OptimizationLevel { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>ONNX Runtime session config entries (session.disable_prepacking=1 …), applied after the decompression mode's.</summary>
    public IReadOnlyDictionary<string, string> SessionEntries { get; init; } = new Dictionary<string, string>();

    /// <summary>Only these components (folder names: unet, prior …); empty: all.</summary>
    public IReadOnlyList<string> Components { get; init; } = [];

    /// <summary>Side of the square float32 MatMul that measures this machine's peak; 0 skips both probes.</summary>
    public int GemmSize { get; init; } = 2048;

    public Action<string>? Progress { get; init; }

    /// <summary>~/.cache/edgediffusion/bench.</summary>
    public static string DefaultDirectory =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "edgediffusion", "bench");
}
