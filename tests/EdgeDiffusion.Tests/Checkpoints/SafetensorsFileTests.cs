using System.Text;
using EdgeDiffusion.Checkpoints;
using static EdgeDiffusion.Tests.Checkpoints.SafetensorsBytes;

namespace EdgeDiffusion.Tests.Checkpoints;

public sealed class SafetensorsFileTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("edgediff-safetensors");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static uint[] Bits(float[] values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();

    [Fact]
    public void Float32_values_come_back_bit_for_bit()
    {
        float[] values = [1.5f, -0.0f, float.PositiveInfinity, float.Epsilon, -3.25e-20f, 123456.789f];
        string path = Write(_dir, "f32.safetensors", Build([new Tensor("w", "F32", [2, 3], Float32(values))]));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(Bits(values), Bits(file.ReadFloat32("w")));
        var info = file.Get("w");
        Assert.Equal(SafetensorsDType.F32, info.DType);
        Assert.Equal([2L, 3L], info.Shape);
        Assert.Equal(0, info.Begin);
        Assert.Equal(24, info.End);
        Assert.Equal(6, info.ElementCount);
    }

    [Fact]
    public void Float16_widens_to_the_known_float32_values()
    {
        // 0x3C00 = 1, 0xC000 = -2, 0x7BFF = 65504 (largest), 0x0001 = 2^-24 (smallest subnormal), 0x7C00 = +inf, 0x8000 = -0
        ushort[] halves = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x8000];
        uint[] expected = [0x3F800000, 0xC0000000, 0x477FE000, 0x33800000, 0x7F800000, 0x80000000];
        string path = Write(_dir, "f16.safetensors", Build([new Tensor("h", "F16", [6], UInt16(halves))]));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(expected, Bits(file.ReadFloat32("h")));
    }

    [Fact]
    public void BFloat16_widens_to_the_upper_half_of_float32()
    {
        // 0x3F80 = 1, 0xC000 = -2, 0x4049 = 3.140625, 0x0001 = 2^-133 (float32 subnormal), 0xFF80 = -inf
        ushort[] bf16 = [0x3F80, 0xC000, 0x4049, 0x0001, 0xFF80];
        string path = Write(_dir, "bf16.safetensors", Build([new Tensor("b", "BF16", [5, 1], UInt16(bf16))]));
        using var file = SafetensorsFile.Open(path);
        float[] values = file.ReadFloat32("b");
        Assert.Equal([0x3F800000u, 0xC0000000, 0x40490000, 0x00010000, 0xFF800000], Bits(values));
        Assert.Equal(1f, values[0]);
        Assert.Equal(-2f, values[1]);
        Assert.Equal(3.140625f, values[2]);
    }

    [Fact]
    public void Int64_and_raw_bytes_read_back()
    {
        long[] ids = [long.MinValue, -1, 0, 1, 49407, long.MaxValue];
        byte[] u8 = [0, 1, 254, 255];
        string path = Write(_dir, "i64.safetensors", Build([new Tensor("ids", "I64", [1, 6], Int64(ids)), new Tensor("mask", "U8", [4], u8)]));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(ids, file.ReadInt64("ids"));
        Assert.Equal(Int64(ids), file.ReadBytes("ids"));
        var raw = new byte[4];
        file.ReadBytes("mask", raw);
        Assert.Equal(u8, raw);
        Assert.Throws<ArgumentException>(() => file.ReadBytes("mask", new byte[3]));
        var wrongType = Assert.Throws<CheckpointFormatException>(() => file.ReadFloat32("ids"));
        Assert.Contains("I64", wrongType.Message);
        Assert.Throws<CheckpointFormatException>(() => file.ReadInt64("mask"));
    }

    [Fact]
    public void Names_are_in_storage_order_and_metadata_is_read()
    {
        // Header order differs from storage order: b's bytes come first.
        string header = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"__metadata__":{"format":"pt","note":"ü"},"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"empty":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]}}   """;
        string path = Write(_dir, "order.safetensors", Build(header, Float32(2f, 1f)));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["b", "a", "empty"], file.Names);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("ü", file.Metadata["note"]);
        Assert.Equal([1f], file.ReadFloat32("a"));
        Assert.Equal([2f], file.ReadFloat32("b"));
        Assert.Empty(file.ReadFloat32("empty"));
        Assert.Empty(file.Get("b").Shape);
        Assert.False(file.Contains("c"));
        var missing = Assert.Throws<CheckpointFormatException>(() => file.Get("c"));
        Assert.Contains(path, missing.Message);
    }

    [Fact]
    public void Large_chunked_float16_read_matches()
    {
        // More than one 1 MB chunk of halves: 600k elements.
        int n = 600_000;
        var halves = new ushort[n];
        for (int i = 0; i < n; i++) halves[i] = (ushort)(i % 0x7C00);
        string path = Write(_dir, "big.safetensors", Build([new Tensor("h", "F16", [n], UInt16(halves))]));
        using var file = SafetensorsFile.Open(path);
        float[] values = file.ReadFloat32("h");
        for (int i = 0; i < n; i += 997)
            Assert.Equal((float)BitConverter.UInt16BitsToHalf(halves[i]), values[i]);
        Assert.Equal((float)BitConverter.UInt16BitsToHalf(halves[n - 1]), values[n - 1]);
    }

    private const string F32x2 = "\"dtype\":\"F32\",\"shape\":[2]";

    /// <summary>Broken files: (case, header text, data bytes, declared header length or null, a word the message must hold).</summary>
    public static TheoryData<string, string, int, long, string> BrokenHeaders => new()
    {
        { "length 0", "", 16, 0, "length of 0" },
        { "length over 100 MB", "{}", 16, 200_000_000, "limit" },
        { "length past the end", "{}", 16, 1000, "truncated" },
        { "not JSON", "{\"w\": {", 16, -1, "not valid" },
        { "not an object", "[1, 2]", 16, -1, "not an object" },
        { "entry not an object", "{\"w\": 3}", 16, -1, "not an object" },
        { "unknown dtype", "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, -1, "unknown dtype 'F12'" },
        { "no dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 16, -1, "dtype" },
        { "shape not a list", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 16, -1, "shape" },
        { "shape negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 16, -1, "non-negative" },
        { "shape fractional", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 16, -1, "non-negative" },
        { "shape of strings", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 16, -1, "non-negative" },
        { "offsets one number", $"{{\"w\":{{{F32x2},\"data_offsets\":[8]}}}}", 16, -1, "data_offsets" },
        { "offsets three numbers", $"{{\"w\":{{{F32x2},\"data_offsets\":[0,8,8]}}}}", 16, -1, "data_offsets" },
        { "offsets strings", $"{{\"w\":{{{F32x2},\"data_offsets\":[\"0\",\"8\"]}}}}", 16, -1, "data_offsets" },
        { "offsets missing", $"{{\"w\":{{{F32x2}}}}}", 16, -1, "data_offsets" },
        { "begin after end", $"{{\"w\":{{{F32x2},\"data_offsets\":[8,0]}}}}", 16, -1, "end before" },
        { "end past the file", $"{{\"w\":{{{F32x2},\"data_offsets\":[16,24]}}}}", 16, -1, "truncated" },
        { "overlap", $"{{\"a\":{{{F32x2},\"data_offsets\":[0,8]}},\"b\":{{{F32x2},\"data_offsets\":[4,12]}}}}", 16, -1, "overlap" },
        { "size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, -1, "12 bytes" },
        { "shape overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 16, -1, "too large" },
        { "duplicate tensor", $"{{\"w\":{{{F32x2},\"data_offsets\":[0,8]}},\"w\":{{{F32x2},\"data_offsets\":[8,16]}}}}", 16, -1, "twice" },
        { "metadata not strings", "{\"__metadata__\":{\"epoch\":3}}", 0, -1, "only strings" },
        { "metadata not an object", "{\"__metadata__\":[\"a\"]}", 0, -1, "not an object" },
    };

    [Theory]
    [MemberData(nameof(BrokenHeaders))]
    public void Broken_header_is_a_one_line_error_naming_the_file(string @case, string header, int dataBytes, long declaredLength, string expected)
    {
        string path = Write(_dir, "broken.safetensors", Build(header, new byte[dataBytes], declaredLength < 0 ? null : (ulong)declaredLength));
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(string.IsNullOrEmpty(@case));
    }

    [Fact]
    public void File_shorter_than_8_bytes_is_an_error()
    {
        string path = Write(_dir, "short.safetensors", [1, 2, 3]);
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, e.File);
        Assert.Contains("3 bytes", e.Message);
    }

    [Fact]
    public void Header_that_is_not_UTF8_is_an_error()
    {
        byte[] header = [.. Encoding.UTF8.GetBytes("{\"w"), 0xFF, 0xFE, .. Encoding.UTF8.GetBytes("\":{}}")];
        string path = Write(_dir, "latin.safetensors", Build(header, []));
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, e.File);
        Assert.Contains("UTF-8 JSON", e.Message);
    }

    [Fact]
    public void Missing_file_is_an_error_naming_it()
    {
        string path = Path.Combine(_dir, "absent.safetensors");
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, e.File);
    }
}
