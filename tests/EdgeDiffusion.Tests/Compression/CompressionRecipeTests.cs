using EdgeDiffusion.Compression;
using Xunit;

namespace EdgeDiffusion.Tests.Compression;

public class CompressionRecipeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgediff-recipe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static CompressionRecipe Sample() => new()
    {
        Description = "test",
        Components =
        {
            ["unet"] = new ComponentRecipe
            {
                Tensors =
                {
                    ["conv.weight"] = new CompressionSpec { Method = CompressionMethod.Palettize, Bits = 4, PaletteGranularity = PaletteGranularity.PerGroupedChannel, GroupSize = 8 },
                    ["proj.weight"] = new CompressionSpec { Method = CompressionMethod.Linear, Dtype = QuantizedType.Int4, Granularity = QuantizationGranularity.PerBlock, BlockSize = 32 },
                },
                AverageBits = 4,
                PredictedPsnrDb = 36.5,
            },
        },
    };

    [Fact]
    public void SaveAndLoadGiveTheSameSpecs()
    {
        string path = Path.Combine(_dir, "r.json");
        Sample().Save(path);
        var loaded = CompressionRecipe.Load(path);
        Assert.Equal(Sample().Components["unet"].Tensors, loaded.Components["unet"].Tensors);
        Assert.Equal(36.5, loaded.Components["unet"].PredictedPsnrDb);
        Assert.Contains("\"per_grouped_channel\"", File.ReadAllText(path));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Theory]
    [InlineData("{ not json", "not a valid recipe")]
    [InlineData("{\"version\": 1, \"components\": {}}", "lists no components")]
    [InlineData("{\"version\": 7, \"components\": {\"unet\": {\"tensors\": {}}}}", "version 7")]
    [InlineData("{\"version\": 1, \"components\": {\"unet\": {\"tensors\": {\"w\": {\"method\": \"palettize\", \"bits\": 5}}}}}", "unet/w")]
    [InlineData("{\"version\": 1, \"components\": {\"unet\": {\"tensors\": {\"w\": {\"method\": \"squash\"}}}}}", "not a valid recipe")]
    public void CorruptRecipesAreClearErrors(string json, string expected)
    {
        string path = Path.Combine(_dir, "bad.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<InvalidArgumentException>(() => CompressionRecipe.Load(path));
        Assert.Contains("--recipe", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingFileAndUnknownTensorsAreClearErrors()
    {
        Assert.Contains("does not exist", Assert.Throws<InvalidArgumentException>(() => CompressionRecipe.Load(Path.Combine(_dir, "none.json"))).Message);
        var recipe = Sample();
        var e = Assert.Throws<InvalidArgumentException>(() => recipe.For("unet", ["conv.weight", "other"]));
        Assert.Contains("'proj.weight'", e.Message);
        Assert.Equal(2, recipe.For("unet", ["conv.weight", "proj.weight"]).Tensors.Count);
        Assert.Empty(recipe.For("vae_decoder", ["x"]).Tensors);
    }
}
