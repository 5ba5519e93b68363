namespace EdgeDiffusion.Bench.Shapes;

/// <summary>What a generated picture shows, read off its pixels.</summary>
public sealed record ShapeReading(string Background, string? Color, string? Shape, string? Position, double FillRatio, int ForegroundPixels);

/// <summary>
/// Reads a tiny-shapes picture programmatically: background = nearest palette colour to the per-channel median of the
/// border; foreground = pixels far from the background; its colour = the palette colour most of them are nearest to;
/// shape = fill ratio of the largest foreground component in its bounding box (square ≈ 1, circle ≈ π/4, triangle ≈ ½);
/// position = centroid of the foreground on a 3 × 3 grid.
/// </summary>
public sealed class ShapeClassifier(IReadOnlyDictionary<string, int[]> palette)
{
    /// <summary>Squared RGB distance beyond which a pixel is foreground (≈ 60 levels).</summary>
    public int ForegroundDistanceSquared { get; init; } = 60 * 60;

    /// <summary>Fill ratios between the ideal values: triangle ½ | 0.64 | circle π/4 | 0.89 | square 1.</summary>
    public static string ShapeOf(double fill) => fill >= 0.89 ? "square" : fill >= 0.64 ? "circle" : "triangle";

    /// <summary>The foreground: pixels farther than <see cref="ForegroundDistanceSquared"/> from the border's per-channel median.</summary>
    public bool[] Foreground(byte[] rgba, int width, int height) => Foreground(rgba, width, height, out _);

    private bool[] Foreground(byte[] rgba, int width, int height, out (int R, int G, int B) median)
    {
        var border = new List<(int R, int G, int B)>();
        for (int x = 0; x < width; x++) { border.Add(Pixel(rgba, width, x, 0)); border.Add(Pixel(rgba, width, x, height - 1)); }
        for (int y = 1; y < height - 1; y++) { border.Add(Pixel(rgba, width, 0, y)); border.Add(Pixel(rgba, width, width - 1, y)); }
        median = (Median(border.Select(p => p.R)), Median(border.Select(p => p.G)), Median(border.Select(p => p.B)));
        var mask = new bool[width * height];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                mask[y * width + x] = Distance(Pixel(rgba, width, x, y), median) > ForegroundDistanceSquared;
        return mask;
    }

    public ShapeReading Read(byte[] rgba, int width, int height)
    {
        var mask = Foreground(rgba, width, height, out var median);
        string background = Nearest(median);
        var votes = new Dictionary<string, int>();
        int count = 0;
        for (int i = 0; i < mask.Length; i++)
        {
            if (!mask[i]) continue;
            count++;
            string c = Nearest(Pixel(rgba, width, i % width, i / width));
            if (c != background) votes[c] = votes.GetValueOrDefault(c) + 1;
        }
        if (count < 4 || votes.Count == 0) return new ShapeReading(background, null, null, null, 0, count);
        string color = votes.MaxBy(v => v.Value).Key;

        var (pixels, minX, minY, maxX, maxY) = LargestComponent(mask, width, height);
        double fill = pixels / (double)((maxX - minX + 1) * (maxY - minY + 1));
        double cx = 0, cy = 0;
        for (int i = 0; i < mask.Length; i++) if (mask[i]) { cx += i % width; cy += i / width; }
        cx /= count; cy /= count;
        return new ShapeReading(background, color, ShapeOf(fill), PositionOf(cx / width, cy / height), fill, count);
    }

    /// <summary>Centroid on a 3 × 3 grid, named as the captions name positions.</summary>
    public static string PositionOf(double fx, double fy)
    {
        string row = fy < 1 / 3.0 ? "top" : fy < 2 / 3.0 ? "" : "bottom";
        string col = fx < 1 / 3.0 ? "left" : fx < 2 / 3.0 ? "" : "right";
        return (row, col) switch { ("", "") => "center", ("", _) => col, (_, "") => row, _ => $"{row} {col}" };
    }

    public string Nearest((int R, int G, int B) p) => palette.MinBy(e => Distance(p, (e.Value[0], e.Value[1], e.Value[2]))).Key;

    private static (int R, int G, int B) Pixel(byte[] rgba, int width, int x, int y)
    {
        int i = (y * width + x) * 4;
        return (rgba[i], rgba[i + 1], rgba[i + 2]);
    }

    private static int Distance((int R, int G, int B) a, (int R, int G, int B) b) =>
        (a.R - b.R) * (a.R - b.R) + (a.G - b.G) * (a.G - b.G) + (a.B - b.B) * (a.B - b.B);

    private static int Median(IEnumerable<int> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    /// <summary>The largest 4-connected foreground component: its pixel count and bounding box.</summary>
    private static (int Pixels, int MinX, int MinY, int MaxX, int MaxY) LargestComponent(bool[] mask, int width, int height)
    {
        var seen = new bool[mask.Length];
        var best = (Pixels: 0, MinX: 0, MinY: 0, MaxX: 0, MaxY: 0);
        var stack = new Stack<int>();
        for (int start = 0; start < mask.Length; start++)
        {
            if (!mask[start] || seen[start]) continue;
            var c = (Pixels: 0, MinX: width, MinY: height, MaxX: -1, MaxY: -1);
            seen[start] = true;
            stack.Push(start);
            while (stack.Count > 0)
            {
                int i = stack.Pop(), x = i % width, y = i / width;
                c = (c.Pixels + 1, Math.Min(c.MinX, x), Math.Min(c.MinY, y), Math.Max(c.MaxX, x), Math.Max(c.MaxY, y));
                foreach (int j in new[] { x > 0 ? i - 1 : -1, x < width - 1 ? i + 1 : -1, y > 0 ? i - width : -1, y < height - 1 ? i + width : -1 })
                    if (j >= 0 && mask[j] && !seen[j]) { seen[j] = true; stack.Push(j); }
            }
            if (c.Pixels > best.Pixels) best = c;
        }
        return best;
    }
}
