using SkiaSharp;

namespace EdgeDiffusion.Imaging;

/// <summary>Tiles images into one grid image, left to right then top to bottom (for contact sheets such as the README's grid of outputs).</summary>
public static class ImageGrid
{
    /// <summary>
    /// The grid of <paramref name="images"/>. Every cell is as wide as the widest image and as tall as the tallest; an
    /// image smaller than its cell is centered in it (rounding toward the top left). <paramref name="columns"/> and
    /// <paramref name="rows"/> may be 0: with both 0 the grid has ceil(√N) columns; with one given the other is just
    /// enough for all images; with both given they must hold all N. <paramref name="spacing"/> pixels of
    /// <paramref name="background"/> (default opaque white) lie between cells, not around the grid; empty cells show the
    /// background. Pixels are copied as they are (no resampling).
    /// </summary>
    public static RgbaImage Compose(IReadOnlyList<RgbaImage> images, int columns = 0, int rows = 0, int spacing = 0, SKColor? background = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new InvalidArgumentException(nameof(images), "is empty; pass at least one image");
        for (int i = 0; i < images.Count; i++)
            if (images[i] is null) throw new InvalidArgumentException(nameof(images), $"image {i} is null");
        if (columns < 0) throw new InvalidArgumentException(nameof(columns), $"is {columns}; pass a positive count, or 0 to choose one");
        if (rows < 0) throw new InvalidArgumentException(nameof(rows), $"is {rows}; pass a positive count, or 0 to choose one");
        if (spacing < 0) throw new InvalidArgumentException(nameof(spacing), $"is {spacing}; the spacing between cells must be 0 or more pixels");

        int n = images.Count;
        if (columns == 0 && rows == 0) columns = (int)Math.Ceiling(Math.Sqrt(n));
        if (columns == 0) columns = (n + rows - 1) / rows;
        if (rows == 0) rows = (n + columns - 1) / columns;
        if ((long)rows * columns < n)
            throw new InvalidArgumentException(nameof(rows), $"{rows} rows × {columns} columns hold {(long)rows * columns} images but {n} were given; pass more rows or columns, or 0 to choose");

        int cellWidth = images.Max(i => i.Width), cellHeight = images.Max(i => i.Height);
        long width = (long)columns * cellWidth + (long)(columns - 1) * spacing;
        long height = (long)rows * cellHeight + (long)(rows - 1) * spacing;
        if (width > int.MaxValue || height > int.MaxValue || width * height * 4 > Array.MaxLength)
            throw new InvalidArgumentException(nameof(images), $"a {columns}x{rows} grid of {cellWidth}x{cellHeight} cells is {width}x{height} pixels, too large; use fewer or smaller images");

        var grid = new RgbaImage((int)width, (int)height);
        var fill = background ?? SKColors.White;
        byte[] color = [fill.Red, fill.Green, fill.Blue, fill.Alpha];
        for (int i = 0; i < grid.Pixels.Length; i += 4) color.CopyTo(grid.Pixels, i);

        for (int index = 0; index < n; index++)
        {
            var image = images[index];
            int left = index % columns * (cellWidth + spacing) + (cellWidth - image.Width) / 2;
            int top = index / columns * (cellHeight + spacing) + (cellHeight - image.Height) / 2;
            for (int y = 0; y < image.Height; y++)
                image.Pixels.AsSpan(y * image.RowBytes, image.RowBytes)
                    .CopyTo(grid.Pixels.AsSpan(((top + y) * grid.Width + left) * 4, image.RowBytes));
        }
        return grid;
    }

    /// <summary>
    /// Composes the grid (see <see cref="Compose"/>) and writes it as a PNG with <see cref="PngWriter.Write"/>: through a
    /// temporary file renamed into place, with the optional <paramref name="text"/> chunks.
    /// </summary>
    public static void Write(string path, IReadOnlyList<RgbaImage> images, int columns = 0, int rows = 0, int spacing = 0,
        SKColor? background = null, IEnumerable<KeyValuePair<string, string>>? text = null) =>
        PngWriter.Write(path, Compose(images, columns, rows, spacing, background), null, text);
}
