using System.Diagnostics;
using System.Globalization;
using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Bench;

/// <summary>
/// Compression quality on a trained model (default models/tiny-shapes): each variant compresses every component, then
/// generates the held-out captions with the same seeds as float32; reported per variant: mean image PSNR against the
/// float32 pictures (8-bit RGB, peak 255), prompt adherence (the shapes classifier), folder size and compression time.
/// </summary>
public static class CompressionQualityBenchmark
{
    public sealed record Variant(string Name, CompressionSpec? Spec, string? Recipe = null);

    public static IReadOnlyList<Variant> DefaultVariants()
    {
        static CompressionSpec P(int bits, bool grouped = false, bool scale = false) => new()
        {
            Method = CompressionMethod.Palettize, Bits = bits,
            PaletteGranularity = grouped ? PaletteGranularity.PerGroupedChannel : PaletteGranularity.PerTensor, GroupSize = 16, PerChannelScale = scale,
        };
        static CompressionSpec L(QuantizedType type, int block = 0) => new()
        {
            Method = CompressionMethod.Linear, Dtype = type,
            Granularity = block > 0 ? QuantizationGranularity.PerBlock : QuantizationGranularity.PerChannel, BlockSize = block,
        };
        return
        [
            new("linear int8 per-channel", L(QuantizedType.Int8)),
            new("palettize 8-bit per-tensor", P(8)),
            new("palettize 6-bit per-tensor", P(6)),
            new("palettize 6-bit grouped g16", P(6, grouped: true)),
            new("palettize 4-bit per-tensor", P(4)),
            new("palettize 4-bit grouped g16", P(4, grouped: true)),
            new("palettize 4-bit grouped g16 + scale", P(4, grouped: true, scale: true)),
            new("linear int4 block 32", L(QuantizedType.Int4, 32)),
            new("palettize 3-bit grouped g16", P(3, grouped: true)),
            new("palettize 2-bit grouped g16", P(2, grouped: true)),
            new("prune 50 % (magnitude)", new CompressionSpec { Method = CompressionMethod.Prune, Sparsity = 0.5 }),
            new("prune 2:4", new CompressionSpec { Method = CompressionMethod.Prune, N = 2, M = 4 }),
            new("prune 50 % then palettize 4-bit", new CompressionSpec { Method = CompressionMethod.Prune, Sparsity = 0.5, Then = P(4) }),
        ];
    }

    public static void Run(string model, string workDir, int seedCount, int steps, double guidance, string? only, string? recipe, DecompressionMode mode)
    {
        var set = HeldOutSet.Load(Path.Combine(model, "evaluation", "heldout.json"));
        var seeds = Enumerable.Range(0, seedCount).Select(i => (ulong)i).ToArray();
        Directory.CreateDirectory(workDir);
        var settings = SessionSettings.Default with { Decompression = mode };

        var reference = new List<RgbaImage>();
        ShapesScore baseScore;
        using (var pipeline = StableDiffusionPipeline.Load(model, settings))
            baseScore = ShapesEvaluation.Run(pipeline, set, seeds, steps, guidance, onImage: reference.Add);
        Console.WriteLine($"| variant | bits | folder MB | × fp32 | image PSNR dB (mean / min) | background | foreground | shape | compress s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        long fpBytes = FolderBytes(model);
        Console.WriteLine(Row("float32 (reference)", "32", fpBytes, fpBytes, double.PositiveInfinity, double.PositiveInfinity, baseScore, 0));

        var variants = DefaultVariants().Where(v => only is null || v.Name.Contains(only, StringComparison.OrdinalIgnoreCase)).ToList();
        if (recipe is not null) variants.Add(new Variant($"mixed-bit recipe {Path.GetFileName(recipe)}", null, recipe));
        foreach (var variant in variants)
        {
            string output = Path.Combine(workDir, string.Concat(variant.Name.Where(char.IsLetterOrDigit)));
            var watch = Stopwatch.StartNew();
            var report = Compress(model, output, variant);
            double seconds = watch.Elapsed.TotalSeconds;
            var psnr = new List<double>();
            int index = 0;
            ShapesScore score;
            using (var pipeline = StableDiffusionPipeline.Load(output, settings))
                score = ShapesEvaluation.Run(pipeline, set, seeds, steps, guidance, onImage: image => psnr.Add(Psnr(reference[index++], image)));
            string bits = report.AverageBits.ToString("0.##", CultureInfo.InvariantCulture);
            Console.WriteLine(Row(variant.Name, bits, FolderBytes(output), fpBytes, psnr.Average(), psnr.Min(), score, seconds));
        }
    }

    private static CompressionReport Compress(string model, string output, Variant variant)
    {
        var options = new FolderCompressionOptions { Overwrite = true };
        if (variant.Recipe is { } file)
            return ModelFolderCompressor.Compress(model, output, CompressionRecipe.Load(file).EncoderChooser(model, file), options);
        var encoder = WeightEncoders.Create(variant.Spec!);
        return ModelFolderCompressor.Compress(model, output, (_, _) => encoder, options);
    }

    /// <summary>PSNR of two RGB pictures (alpha ignored), peak 255; identical pictures give +∞.</summary>
    public static double Psnr(RgbaImage a, RgbaImage b)
    {
        double sum = 0;
        long n = 0;
        for (int i = 0; i < a.Pixels.Length; i += 4)
            for (int c = 0; c < 3; c++)
            {
                double d = a.Pixels[i + c] - b.Pixels[i + c];
                sum += d * d;
                n++;
            }
        return sum == 0 ? double.PositiveInfinity : 10 * Math.Log10(255.0 * 255.0 / (sum / n));
    }

    private static long FolderBytes(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}evaluation{Path.DirectorySeparatorChar}", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length);

    private static string Row(string name, string bits, long bytes, long fpBytes, double meanPsnr, double minPsnr, ShapesScore s, double seconds) =>
        string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {bits} | {bytes / 1e6:0.00} | {(double)bytes / fpBytes:0.000} | {Db(meanPsnr)} / {Db(minPsnr)} | {s.Background:P1} | {s.Color:P1} | {s.Shape:P1} | {seconds:0.0} |");

    private static string Db(double v) => double.IsPositiveInfinity(v) ? "∞" : v.ToString("0.0", CultureInfo.InvariantCulture);
}
