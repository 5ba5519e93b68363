using EdgeDiffusion.Compression;
using Xunit;

namespace EdgeDiffusion.Tests.Compression;

public class MixedBitPlannerTests
{
    private static LayerSensitivity Layer(string name, long parameters, double mse8, double mse6, double mse4) =>
        new(name, parameters, new Dictionary<int, double> { [8] = mse8, [6] = mse6, [4] = mse4 });

    [Fact]
    public void TargetBitsNarrowsTheCheapestLayersFirstAndStopsAtTheTarget()
    {
        // Equal sizes: a → 6 costs 1e-6, b → 6 costs 1e-5, a → 4 costs 9.9e-5 more: at an average of 6 bits both sit at 6
        // (noise 1.1e-5), not a at 4 and b at 8 (noise 1e-4), which has the same average.
        var layers = new[] { Layer("a", 1000, 0, 1e-6, 1e-4), Layer("b", 1000, 0, 1e-5, 1e-3) };
        var plan = MixedBitPlanner.Allocate(layers, peak: 1, targetBits: 6, targetPsnrDb: null);
        Assert.Equal(6, plan.BitsByTensor["a"]);
        Assert.Equal(6, plan.BitsByTensor["b"]);
        Assert.Equal(6, plan.AverageBits, 9);
        Assert.Equal(10 * Math.Log10(1 / 1.1e-5), plan.PredictedPsnrDb, 9);
    }

    [Fact]
    public void AverageBitsAreWeightedByParameters()
    {
        // The big layer costs the same error to narrow as the small one but saves 9× the bits, so it goes first: one step
        // from 8 to 6 on 900 of 1000 parameters gives 8 − 2·0.9 = 6.2 ≤ 6.5.
        var layers = new[] { Layer("small", 100, 0, 1e-6, 1e-5), Layer("big", 900, 0, 1e-6, 1e-5) };
        var plan = MixedBitPlanner.Allocate(layers, peak: 1, targetBits: 6.5, targetPsnrDb: null);
        Assert.Equal(8, plan.BitsByTensor["small"]);
        Assert.Equal(6, plan.BitsByTensor["big"]);
        Assert.Equal(6.2, plan.AverageBits, 9);
    }

    [Fact]
    public void TargetPsnrStopsBeforeTheStepThatWouldMissIt()
    {
        var layers = new[] { Layer("a", 1000, 0, 1e-6, 1e-4), Layer("b", 1000, 0, 1e-5, 1e-3) };
        // After a → 6 and b → 6 the prediction is 49.6 dB; the next cheapest step (a → 4) would give 39.6 dB < 45.
        var plan = MixedBitPlanner.Allocate(layers, peak: 1, targetBits: null, targetPsnrDb: 45);
        Assert.Equal(6, plan.BitsByTensor["a"]);
        Assert.Equal(6, plan.BitsByTensor["b"]);
        Assert.True(plan.PredictedPsnrDb >= 45);
        // With a low enough target every layer reaches the narrowest width.
        var all = MixedBitPlanner.Allocate(layers, peak: 1, targetBits: null, targetPsnrDb: 1);
        Assert.All(all.BitsByTensor.Values, b => Assert.Equal(4, b));
        Assert.Equal(10 * Math.Log10(1 / 1.1e-3), all.PredictedPsnrDb, 9);
    }

    [Fact]
    public void BadTargetsAreRejectedNamingTheOption()
    {
        var layers = new[] { Layer("a", 10, 0, 1e-6, 1e-4) };
        Assert.Contains("--target-bits", Assert.Throws<InvalidArgumentException>(() => MixedBitPlanner.Allocate(layers, 1, 4, 30)).Message);
        Assert.Contains("--target-bits", Assert.Throws<InvalidArgumentException>(() => MixedBitPlanner.Allocate(layers, 1, 3, null)).Message);
        Assert.Contains("--target-psnr", Assert.Throws<InvalidArgumentException>(() => MixedBitPlanner.Allocate(layers, 1, null, -5)).Message);
    }

    [Fact]
    public void WithBitsMapsWidthsToEachMethod()
    {
        var palette = new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 6 };
        Assert.Equal(3, MixedBitPlanner.WithBits(palette, 3).Bits);
        var linear = new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.UInt8 };
        Assert.Equal(QuantizedType.UInt4, MixedBitPlanner.WithBits(linear, 4).Dtype);
        Assert.Throws<InvalidArgumentException>(() => MixedBitPlanner.WithBits(linear, 6));
        Assert.Throws<InvalidArgumentException>(() => MixedBitPlanner.WithBits(new CompressionSpec { Method = CompressionMethod.Prune, Sparsity = 0.5 }, 4));
    }
}

public class MixedBitPlannerOrtTests
{
    [Fact]
    public void SensitivityOfTheTinyTextEncoderFallsAsBitsRiseAndThePlanMeetsItsTarget()
    {
        using var model = EdgeDiffusion.Onnx.OnnxModel.Load(Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "text_encoder", "model.onnx"));
        var weights = WeightSelection.Default.Select(model.Graph);
        Assert.NotEmpty(weights);
        using var inputs = CalibrationInputs.For(model.Graph, samples: 2, spatialSize: 8);
        var spec = new CompressionSpec { Method = CompressionMethod.Palettize };
        var plan = MixedBitPlanner.Plan(model, weights, spec, [8, 4, 2], inputs, targetBits: 4, targetPsnrDb: null);
        foreach (var layer in plan.Sensitivities)
        {
            // Fewer palette entries can only fit the weights worse, and the output error follows on average; allow
            // a little slack for the rare layer where a coarser table happens to cancel errors.
            Assert.True(layer.MseByBits[2] >= layer.MseByBits[8], $"{layer.Name}: 2-bit {layer.MseByBits[2]} < 8-bit {layer.MseByBits[8]}");
            Assert.True(layer.MseByBits[8] < 1e-3 * plan.OutputPeak * plan.OutputPeak, layer.Name);
        }
        Assert.True(plan.AverageBits <= 4 + 1e-9);
        double total = weights.Sum(w => (double)w.ElementCount);
        double weighted = weights.Sum(w => plan.BitsByTensor[w.Name] * (double)w.ElementCount) / total;
        Assert.Equal(weighted, plan.AverageBits, 9);
        Assert.Contains(plan.BitsByTensor.Values, b => b != 4); // mixed, not uniform
    }
}
