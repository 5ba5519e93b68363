using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// The picture gate for Stable Cascade: the trained three-stage models/tiny-cascade draws the held-out captions' colours
/// (prior 20 steps at guidance 4, decoder 10 unguided, as its folder says), and its compressed copies stay close to
/// float32 (picture PSNR on the same seeds). Floors a few points under the figures in training/tiny-cascade/README.md.
/// </summary>
public sealed class CascadePictureTests(ITestOutputHelper output)
{
    private static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-cascade");

    private static HeldOutSet Subset()
    {
        var set = HeldOutSet.Load(Path.Combine(Model, "evaluation", "heldout.json"));
        return set with { Captions = set.Captions.Where((_, i) => i % 4 == 0).ToList() };
    }

    private static Func<string, ulong, RgbaImage> Drawer(StableCascadePipeline pipeline) => (caption, seed) =>
        pipeline.Generate(new CascadeRequest { Prompt = caption, Seed = seed }).Image(0);

    [Fact]
    public void DrawsTheHeldOutCaptionsColours()
    {
        using var pipeline = StableCascadePipeline.Load(Model);
        var score = ShapesEvaluation.Run(Drawer(pipeline), Subset(), [0, 1]);
        output.WriteLine(score.ToString());
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Color >= CascadeFloors.Foreground, score.ToString());
        Assert.True(score.Background >= CascadeFloors.Background, score.ToString());
        Assert.True(score.Shape >= CascadeFloors.Shape, score.ToString());
    }

    [Theory]
    [InlineData("linear int8", 40.0)]
    [InlineData("palettize 6", 34.0)]
    public void CompressedCopiesStayCloseToFloat32(string variant, double floorDb)
    {
        var spec = variant == "linear int8"
            ? new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int8 }
            : new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 6 };
        string folder = TestData.NewTempDir("tiny-cascade-" + string.Concat(variant.Where(char.IsLetterOrDigit)));
        try
        {
            var encoder = WeightEncoders.Create(spec);
            ModelFolderCompressor.Compress(Model, folder, (_, _) => encoder, new FolderCompressionOptions { Overwrite = true });
            var set = Subset();
            var reference = new List<RgbaImage>();
            using (var pipeline = StableCascadePipeline.Load(Model)) ShapesEvaluation.Run(Drawer(pipeline), set, [0], onImage: reference.Add);
            var images = new List<RgbaImage>();
            ShapesScore score;
            var settings = SessionSettings.Default with { Cache = new SessionCache(Path.Combine(folder, ".cache")) };
            using (var pipeline = StableCascadePipeline.Load(folder, settings)) score = ShapesEvaluation.Run(Drawer(pipeline), set, [0], onImage: images.Add);
            var psnr = PictureGate.Psnrs(reference, images);
            output.WriteLine($"{variant}: PSNR mean {psnr.Average():F1} dB, min {psnr.Min():F1}; {score}");
            Assert.True(psnr.Average() >= floorDb, $"{variant}: mean picture PSNR {psnr.Average():F1} dB against float32 is under {floorDb} dB");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

/// <summary>
/// The tiny-cascade floors, a few pictures under what the shipped model measures on this subset in C# (2026-12-07 fifth
/// model, Stage B 45 min more at lr 1e-4 with the empty caption's pooled text for 70 % of its samples and small corners
/// drawn 4x as often: background 97.2 %, foreground colour 94.4 %, shape 72.2 % (26 of 36), position 91.7 %; int8
/// 49.3 dB, 6-bit palettes 39.1 dB). The shape floor sits two pictures under it (0.65): this subset is 36 pictures, and
/// the fourth model read 77.8 % here while drawing fewer held-out shapes over 144 pictures (73.6 % against 76.4 %).
/// Earlier models: the third background 91.7 %, shape 72.2 %; the first 2026-12-07 one background 77.8 %, shape 55.6 %;
/// the 2026-12-06 one shape 33.3 % (blobs). Python, all 72 held-out captions x 2 seeds: background 96.5 %, colour 100 %,
/// shape 76.4 % (the issue asks 75 %; 6 seeds: 75.0 %). Raise them with the model.
/// </summary>
internal static class CascadeFloors
{
    public const double Foreground = 0.9;
    public const double Background = 0.9;
    public const double Shape = 0.65;
}
