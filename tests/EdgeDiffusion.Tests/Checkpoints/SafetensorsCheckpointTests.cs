using System.Text.Json;
using EdgeDiffusion.Checkpoints;
using static EdgeDiffusion.Tests.Checkpoints.SafetensorsBytes;

namespace EdgeDiffusion.Tests.Checkpoints;

public sealed class SafetensorsCheckpointTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("edgediff-safetensors-index");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void WriteShards()
    {
        Write(_dir, "model-00001-of-00002.safetensors", Build(
            [new Tensor("a.weight", "F32", [2], Float32(1f, 2f)), new Tensor("a.bias", "F16", [1], UInt16(0xC000))]));
        Write(_dir, "model-00002-of-00002.safetensors", Build(
            [new Tensor("b.weight", "BF16", [2], UInt16(0x3F80, 0x4049)), new Tensor("b.ids", "I64", [2], Int64(7, -7))]));
    }

    private string WriteIndex(object weightMap, string name = "model.safetensors.index.json") =>
        Write(_dir, name, JsonSerializer.SerializeToUtf8Bytes(new { metadata = new { total_size = 28, format = "pt" }, weight_map = weightMap }));

    [Fact]
    public void Index_over_two_shards_is_one_view()
    {
        WriteShards();
        string index = WriteIndex(new Dictionary<string, string>
        {
            ["b.weight"] = "model-00002-of-00002.safetensors",
            ["a.weight"] = "model-00001-of-00002.safetensors",
            ["a.bias"] = "model-00001-of-00002.safetensors",
            ["b.ids"] = "model-00002-of-00002.safetensors",
        });
        using var checkpoint = SafetensorsCheckpoint.Open(index);
        Assert.Equal(["b.weight", "a.weight", "a.bias", "b.ids"], checkpoint.Names);
        Assert.Equal(2, checkpoint.Files.Count);
        Assert.Equal("28", checkpoint.Metadata["total_size"]);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        Assert.Equal([1f, 2f], checkpoint.ReadFloat32("a.weight"));
        Assert.Equal([-2f], checkpoint.ReadFloat32("a.bias"));
        Assert.Equal([1f, 3.140625f], checkpoint.ReadFloat32("b.weight"));
        Assert.Equal([7L, -7L], checkpoint.ReadInt64("b.ids"));
        Assert.Equal(SafetensorsDType.BF16, checkpoint.Get("b.weight").DType);
        Assert.EndsWith("model-00002-of-00002.safetensors", checkpoint.FileOf("b.ids").Path);
        Assert.Same(checkpoint.FileOf("b.ids"), checkpoint.FileOf("b.weight"));
    }

    [Fact]
    public void Single_file_is_a_checkpoint_too()
    {
        WriteShards();
        using var checkpoint = SafetensorsCheckpoint.Open(Path.Combine(_dir, "model-00001-of-00002.safetensors"));
        Assert.Equal(["a.weight", "a.bias"], checkpoint.Names);
        Assert.Single(checkpoint.Files);
        Assert.Equal([1f, 2f], checkpoint.ReadFloat32("a.weight"));
        Assert.Throws<CheckpointFormatException>(() => checkpoint.Get("b.weight"));
    }

    [Fact]
    public void Name_missing_from_its_shard_is_an_error()
    {
        WriteShards();
        string index = WriteIndex(new Dictionary<string, string>
        {
            ["a.weight"] = "model-00001-of-00002.safetensors",
            ["b.weight"] = "model-00001-of-00002.safetensors",
        });
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Equal(index, e.File);
        Assert.Contains("'b.weight'", e.Message);
        Assert.Contains("does not hold it", e.Message);
    }

    [Fact]
    public void Missing_shard_file_is_an_error()
    {
        WriteShards();
        string index = WriteIndex(new Dictionary<string, string> { ["a.weight"] = "model-00003-of-00003.safetensors" });
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Equal(index, e.File);
        Assert.Contains("model-00003-of-00003.safetensors", e.Message);
    }

    [Fact]
    public void Duplicate_weight_map_entry_is_an_error()
    {
        WriteShards();
        string index = Write(_dir, "dup.safetensors.index.json", System.Text.Encoding.UTF8.GetBytes(
            """{"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "a.weight": "model-00002-of-00002.safetensors"}}"""));
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Equal(index, e.File);
        Assert.Contains("twice", e.Message);
    }

    [Theory]
    [InlineData("""[1]""", "weight_map")]
    [InlineData("""{"metadata": {}}""", "weight_map")]
    [InlineData("""{"weight_map": {}}""", "empty")]
    [InlineData("""{"weight_map": {"a.weight": 3}}""", "not a shard file name")]
    [InlineData("""{"weight_map": {"a.weight": "../model-00001-of-00002.safetensors"}}""", "outside")]
    [InlineData("""{"weight_map": {""", "not valid JSON")]
    public void Broken_index_is_an_error_naming_it(string json, string expected)
    {
        WriteShards();
        string index = Write(_dir, "broken.safetensors.index.json", System.Text.Encoding.UTF8.GetBytes(json));
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Equal(index, e.File);
        Assert.StartsWith(index + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Broken_shard_is_an_error_naming_the_shard()
    {
        WriteShards();
        string shard = Write(_dir, "bad.safetensors", [1, 2, 3]);
        string index = WriteIndex(new Dictionary<string, string> { ["a.weight"] = "bad.safetensors" });
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsCheckpoint.Open(index));
        Assert.Equal(shard, e.File);
    }
}
