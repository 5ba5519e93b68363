using System.Globalization;
using System.Text.Json;
using EdgeDiffusion.Checkpoints;

namespace EdgeDiffusion.Tests.Checkpoints;

/// <summary>
/// Fixtures/torch-tensors.safetensors, written from real torch 1.13 tensors (F32, F16, BF16, I64) by
/// training/fixtures/make_safetensors_fixture.py, read back against torch's own float32 widening, bit for bit.
/// </summary>
public sealed class TorchFixtureSafetensorsTests
{
    private static readonly string FixtureDir = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Checkpoints", "Fixtures");

    [Fact]
    public void Reader_reproduces_torch_values_exactly()
    {
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir, "torch-tensors.expected.json")));
        using var file = SafetensorsFile.Open(Path.Combine(FixtureDir, "torch-tensors.safetensors"));

        var tensors = expected.RootElement.GetProperty("tensors");
        Assert.Equal(tensors.EnumerateObject().Select(p => p.Name), file.Names);
        foreach (var meta in expected.RootElement.GetProperty("metadata").EnumerateObject())
            Assert.Equal(meta.Value.GetString(), file.Metadata[meta.Name]);

        foreach (var tensor in tensors.EnumerateObject())
        {
            var info = file.Get(tensor.Name);
            Assert.Equal(tensor.Value.GetProperty("dtype").GetString(), info.DType.Name());
            Assert.Equal(tensor.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), info.Shape);
            if (tensor.Value.TryGetProperty("values", out var longs))
            {
                Assert.Equal(longs.EnumerateArray().Select(v => v.GetInt64()), file.ReadInt64(tensor.Name));
                continue;
            }
            string hex = tensor.Value.GetProperty("float32_bits").GetString()!;
            var bits = Enumerable.Range(0, hex.Length / 8).Select(i => uint.Parse(hex.AsSpan(i * 8, 8), NumberStyles.HexNumber)).ToArray();
            Assert.True(bits.Length > 0);
            Assert.Equal(bits, file.ReadFloat32(tensor.Name).Select(BitConverter.SingleToUInt32Bits));
        }
    }
}
