using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeDiffusion.Bench.Shapes;

/// <summary>One held-out caption and what its picture must show.</summary>
public sealed record HeldOutCaption(
    [property: JsonPropertyName("caption")] string Caption,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("color")] string Color,
    [property: JsonPropertyName("background")] string Background,
    [property: JsonPropertyName("position")] string? Position,
    [property: JsonPropertyName("size")] string? Size);

/// <summary>The tiny-shapes held-out set (training/tiny-shapes/heldout.json): captions whose combinations training never saw, and the palette.</summary>
public sealed record HeldOutSet(
    [property: JsonPropertyName("palette")] IReadOnlyDictionary<string, int[]> Palette,
    [property: JsonPropertyName("image_size")] int ImageSize,
    [property: JsonPropertyName("captions")] IReadOnlyList<HeldOutCaption> Captions)
{
    /// <summary>Bounding-box side per size name ("small" 16, "large" 30), from sizes_px; empty in files without it.</summary>
    public IReadOnlyDictionary<string, int> SizesPx { get; init; } = new Dictionary<string, int>();

    /// <summary>Bounding-box centre (x, y) per size and position name, from position_centers_px; empty in files without it.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, double[]>> PositionCentersPx { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, double[]>>();

    public static HeldOutSet Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidArgumentException("--heldout", $"{path} not found; it ships in models/tiny-shapes/evaluation/heldout.json");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var palette = root.GetProperty("palette").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(v => v.GetInt32()).ToArray());
            int size = root.TryGetProperty("image_size", out var s) ? s.GetInt32() : 64;
            var items = root.TryGetProperty("captions", out var c) ? c : root.GetProperty("items");
            var captions = items.Deserialize<List<HeldOutCaption>>() ?? [];
            var sizes = root.TryGetProperty("sizes_px", out var z) ? z.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32()) : [];
            var centers = root.TryGetProperty("position_centers_px", out var pc)
                ? pc.EnumerateObject().ToDictionary(p => p.Name, p => (IReadOnlyDictionary<string, double[]>)p.Value.EnumerateObject()
                    .ToDictionary(q => q.Name, q => q.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray()))
                : [];
            return new HeldOutSet(palette, size, captions) { SizesPx = sizes, PositionCentersPx = centers };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidArgumentException("--heldout", $"{path} is not a held-out set ({e.Message})");
        }
    }
}
