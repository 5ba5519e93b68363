using EdgeDiffusion.Imaging;

namespace EdgeDiffusion.Bench.Shapes;

/// <summary>
/// Draws what a held-out caption describes, as training/tiny-shapes/data.py draws its training images (without the
/// ±2 px jitter): each pixel's coverage by the shape sampled on a 4 × 4 grid, foreground blended over the background,
/// rounded to bytes. Used to measure how much of the shape metric survives the VAE alone (bench shapes --through-vae).
/// </summary>
public static class ShapeDrawing
{
    /// <summary>Count 2: two small shapes side by side, centres at x = size/2 ∓ this, y = size/2 (data.py's PAIR_OFFSET).</summary>
    public const double PairOffset = 12;

    private const int Supersample = 4;

    public static RgbaImage Draw(HeldOutSet set, HeldOutCaption caption)
    {
        int n = set.ImageSize;
        string sizeName = caption.Size ?? "small";
        if (!set.SizesPx.TryGetValue(sizeName, out int side))
            throw new InvalidArgumentException("--heldout", $"size '{sizeName}' is not in sizes_px");
        var centers = new List<(double X, double Y)>();
        if (caption.Count == 2)
        {
            centers.Add((n / 2.0 - PairOffset, n / 2.0));
            centers.Add((n / 2.0 + PairOffset, n / 2.0));
        }
        else
        {
            string position = caption.Position ?? "center";
            if (!set.PositionCentersPx.TryGetValue(sizeName, out var bySize) || !bySize.TryGetValue(position, out var c))
                throw new InvalidArgumentException("--heldout", $"position '{position}' ({sizeName}) is not in position_centers_px");
            centers.Add((c[0], c[1]));
        }
        var fg = set.Palette[caption.Color];
        var bg = set.Palette[caption.Background];
        var image = new RgbaImage(n, n);
        double h = side / 2.0;
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
            {
                int covered = 0;
                for (int sy = 0; sy < Supersample; sy++)
                    for (int sx = 0; sx < Supersample; sx++)
                    {
                        double px = x + (sx + 0.5) / Supersample, py = y + (sy + 0.5) / Supersample;
                        if (centers.Any(ct => Inside(caption.Shape, px - ct.X, py - ct.Y, h))) covered++;
                    }
                float alpha = covered / (float)(Supersample * Supersample);
                int i = (y * n + x) * 4;
                for (int k = 0; k < 3; k++)
                    image.Pixels[i + k] = (byte)Math.Clamp(Math.Round(bg[k] * (1 - alpha) + fg[k] * alpha), 0, 255);
                image.Pixels[i + 3] = 255;
            }
        return image;
    }

    /// <summary>Whether the point (dx, dy) from the bounding-box centre lies in the shape of half-side h.</summary>
    public static bool Inside(string shape, double dx, double dy, double h) => shape switch
    {
        "circle" => dx * dx + dy * dy <= h * h,
        "square" => Math.Abs(dx) <= h && Math.Abs(dy) <= h,
        // isosceles, pointing up, base at the bottom: half its bounding box
        "triangle" => dy >= -h && dy <= h && Math.Abs(dx) <= (dy + h) / 2,
        _ => throw new InvalidArgumentException("--heldout", $"unknown shape '{shape}'"),
    };
}
