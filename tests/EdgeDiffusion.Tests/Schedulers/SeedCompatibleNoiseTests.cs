using System.Globalization;
using System.Text.Json;
using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

/// <summary>
/// TorchNoise and NumpyNoise against Fixtures/noise-reference.json (torch 1.13 and numpy 1.24 values, made by
/// training/fixtures/make_noise_fixtures.py), bit for bit.
/// </summary>
public class SeedCompatibleNoiseTests
{
    private static readonly Lazy<JsonElement> Fixture = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Schedulers", "Fixtures", "noise-reference.json"))).RootElement);

    /// <summary>One row per fixture case: "torch/avx2", "torch/default" or "numpy", and the case's index.</summary>
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var set in new[] { "torch/avx2", "torch/default", "numpy" })
            for (int i = 0; i < CasesOf(set).GetArrayLength(); i++) data.Add(set, i);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ValuesEqualTheReferenceBitForBit(string set, int index)
    {
        var c = CasesOf(set)[index];
        ulong seed = c.GetProperty("seed").GetUInt64();
        INoiseSource noise = set switch
        {
            "torch/avx2" => new TorchNoise(seed),
            "torch/default" => new TorchNoise(seed, TorchCpuKernel.Scalar),
            _ => new NumpyNoise(seed),
        };
        var calls = c.GetProperty("calls").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = c.GetProperty("values").EnumerateArray().Select(e => e.GetString()!).ToArray();
        for (int k = 0; k < calls.Length; k++)
        {
            var values = new float[calls[k]];
            noise.Fill(values);
            var want = Bits(expected[k]);
            Assert.Equal(want.Length, values.Length);
            for (int i = 0; i < values.Length; i++)
                if (BitConverter.SingleToUInt32Bits(values[i]) != want[i])
                    Assert.Fail($"{set} seed {seed}, calls [{string.Join(", ", calls)}]: call {k} value {i} is {values[i]:R} " +
                                $"(0x{BitConverter.SingleToUInt32Bits(values[i]):x8}); the reference is {BitConverter.UInt32BitsToSingle(want[i]):R} (0x{want[i]:x8})");
        }
    }

    [Fact]
    public void TheFixtureCoversBothTorchPathsTheTailAndSuccessiveCalls()
    {
        var avx2 = CasesOf("torch/avx2").EnumerateArray().Select(c => string.Join(",", c.GetProperty("calls").EnumerateArray().Select(e => e.GetInt32()))).ToHashSet();
        foreach (var calls in new[] { "1", "15", "16", "17", "256", "1000", "7,7", "5,17,5" }) Assert.Contains(calls, avx2);
        Assert.Equal("AVX2", Fixture.Value.GetProperty("torch").GetProperty("avx2").GetProperty("capability").GetString());
        Assert.Contains(CasesOf("torch/avx2").EnumerateArray(), c => c.GetProperty("seed").GetUInt64() == (1UL << 32) + 5);
    }

    [Fact]
    public void RandnOfTheSdLatentShapeIsOneCallOfItsElementCount()
    {
        var latent = new TorchNoise(42).Randn(1, 4, 8, 8);
        var flat = new float[256];
        new TorchNoise(42).Fill(flat);
        Assert.Equal(flat, latent);
        // The well-known first values of torch.manual_seed(42); torch.randn(4) (the scalar path).
        var four = new TorchNoise(42).Randn(4);
        Assert.Equal([0.33669036626815796f, 0.12880940735340118f, 0.23446236550807953f, 0.23033303022384644f], four);
    }

    [Fact]
    public void TorchSeedsUseTheirLowThirtyTwoBitsAsTorchDoes()
    {
        var high = new TorchNoise((1UL << 32) + 5).Randn(20);
        Assert.Equal(new TorchNoise(5).Randn(20), high);
    }

    [Fact]
    public void NumpyRejectsSeedsAboveThirtyTwoBitsAsNumpyDoes()
    {
        Assert.True(Fixture.Value.GetProperty("numpy").GetProperty("rejects_seed_2_32_plus_5").GetBoolean());
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new NumpyNoise((1UL << 32) + 5));
        Assert.Contains("4294967295", e.Message);
        _ = new NumpyNoise(uint.MaxValue);
    }

    [Fact]
    public void NumpyStreamDoesNotDependOnHowItIsSplit()
    {
        var whole = new float[21];
        new NumpyNoise(3).Fill(whole);
        var parts = new float[21];
        var noise = new NumpyNoise(3);
        noise.Fill(parts.AsSpan(0, 7));
        noise.Fill(parts.AsSpan(7, 14));
        Assert.Equal(whole, parts);
    }

    [Fact]
    public void FactoryCreatesEachSourceByName()
    {
        Assert.Equal(["edgediff", "torch", "numpy"], NoiseSources.Names);
        Assert.IsType<GaussianNoise>(NoiseSources.Create("edgediff", 1));
        Assert.IsType<TorchNoise>(NoiseSources.Create(" Torch ", 1));
        Assert.IsType<NumpyNoise>(NoiseSources.Create("NUMPY", 1));
        Assert.True(NoiseSources.IsKnown("torch"));
        Assert.False(NoiseSources.IsKnown("philox"));
        Assert.False(NoiseSources.IsKnown(null));

        var a = new float[16];
        var b = new float[16];
        NoiseSources.Create(NoiseSources.Default, 9).Fill(a);
        new GaussianNoise(9).Fill(b);
        Assert.Equal(b, a);
    }

    [Fact]
    public void FactoryRejectsAnUnknownNameListingTheNames()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => NoiseSources.Create("philox", 1));
        Assert.Equal("rng", e.Argument);
        Assert.Equal("rng: \"philox\" is not a noise source; use one of edgediff, torch, numpy", e.Message);
    }

    private static JsonElement CasesOf(string set) => set switch
    {
        "torch/avx2" => Fixture.Value.GetProperty("torch").GetProperty("avx2").GetProperty("cases"),
        "torch/default" => Fixture.Value.GetProperty("torch").GetProperty("default").GetProperty("cases"),
        "numpy" => Fixture.Value.GetProperty("numpy").GetProperty("cases"),
        _ => throw new ArgumentException(set),
    };

    private static uint[] Bits(string hex) =>
        Enumerable.Range(0, hex.Length / 8).Select(i => uint.Parse(hex.AsSpan(8 * i, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
}
