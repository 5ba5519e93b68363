using EdgeDiffusion.Bench;
using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// What the picture gate shares: the trained default model, a fixed subset of its held-out captions (combinations
/// training never saw), fixed seeds, the float32 reference pictures and a folder for compressed copies. Loaded once per
/// test run (an xunit collection fixture); the model draws a 64×64 picture in about 0.1 s.
/// </summary>
public sealed class PictureGate : IDisposable
{
    public static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    /// <summary>All 72 held-out captions.</summary>
    public HeldOutSet HeldOut { get; }

    /// <summary>Every 8th held-out caption (9 of 72): each background and foreground colour and every shape appear.</summary>
    public HeldOutSet Subset { get; }

    public IReadOnlyList<ulong> Seeds { get; } = [0, 1];

    /// <summary>The model's own guidance (3), what `edgediff generate` uses.</summary>
    public double Guidance { get; }

    public string WorkDir { get; } = TestData.NewTempDir("edgediff-gate");

    private readonly Dictionary<(string Scheduler, int Steps), IReadOnlyList<RgbaImage>> _references = [];
    private readonly Dictionary<string, string> _compressed = [];
    private readonly Lock _lock = new();

    public PictureGate()
    {
        HeldOut = HeldOutSet.Load(Path.Combine(Model, "evaluation", "heldout.json"));
        Subset = HeldOut with { Captions = HeldOut.Captions.Where((_, i) => i % 8 == 0).ToList() };
        Guidance = StableDiffusionPipeline.ConfiguredGuidance(Model) ?? GenerationRequest.DefaultGuidance;
        Float32 = StableDiffusionPipeline.Load(Model);
    }

    /// <summary>The float32 pipeline, no session cache.</summary>
    public StableDiffusionPipeline Float32 { get; }

    /// <summary>The float32 pictures of the subset for one scheduler and step count (made once).</summary>
    public IReadOnlyList<RgbaImage> References(string scheduler = "euler", int steps = 20)
    {
        lock (_lock)
        {
            if (_references.TryGetValue((scheduler, steps), out var images)) return images;
            var list = new List<RgbaImage>();
            ShapesEvaluation.Run(Float32, Subset, Seeds, steps, Guidance, scheduler, onImage: list.Add);
            return _references[(scheduler, steps)] = list;
        }
    }

    /// <summary>The default model compressed with <paramref name="variant"/> into the gate's folder (made once per variant).</summary>
    public string Compressed(string name, Func<string, string, CompressionReport> compress)
    {
        lock (_lock)
        {
            if (_compressed.TryGetValue(name, out var folder)) return folder;
            folder = Path.Combine(WorkDir, string.Concat(name.Where(char.IsLetterOrDigit)));
            compress(Model, folder);
            return _compressed[name] = folder;
        }
    }

    /// <summary>Picture PSNR (8-bit RGB, peak 255) of each image against the reference, in order.</summary>
    public static IReadOnlyList<double> Psnrs(IReadOnlyList<RgbaImage> reference, IReadOnlyList<RgbaImage> images)
    {
        Assert.Equal(reference.Count, images.Count);
        return reference.Zip(images, CompressionQualityBenchmark.Psnr).ToList();
    }

    public void Dispose()
    {
        Float32.Dispose();
        try { Directory.Delete(WorkDir, recursive: true); }
        catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class PictureGateCollection : ICollectionFixture<PictureGate>
{
    public const string Name = "picture gate";
}
