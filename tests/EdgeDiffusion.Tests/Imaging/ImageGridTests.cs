using EdgeDiffusion.Imaging;
using SkiaSharp;

namespace EdgeDiffusion.Tests.Imaging;

public sealed class ImageGridTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RgbaImage Solid(int width, int height, SKColor color)
    {
        var image = new RgbaImage(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                image.SetPixel(x, y, color);
        return image;
    }

    private static readonly SKColor[] Colors =
        [new(255, 0, 0), new(0, 255, 0), new(0, 0, 255), new(10, 20, 30), new(200, 100, 50)];

    [Fact]
    public void TilesLeftToRightThenTopToBottomWithSpacing()
    {
        var images = Colors.Select(c => Solid(4, 3, c)).ToList();
        var grid = ImageGrid.Compose(images, columns: 3, spacing: 2, background: new SKColor(9, 9, 9, 255));

        // 3 columns × 2 rows of 4x3 cells, 2 pixels between: 3·4 + 2·2 = 16 wide, 2·3 + 1·2 = 8 tall.
        Assert.Equal((16, 8), (grid.Width, grid.Height));
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 16; x++)
            {
                // Which cell (if any) covers (x, y): cells start every 6 pixels across and every 5 down.
                int column = x / 6, row = y / 5;
                bool inCell = x % 6 < 4 && y % 5 < 3;
                int index = row * 3 + column;
                var expected = inCell && index < 5 ? Colors[index] : new SKColor(9, 9, 9, 255);
                Assert.Equal(expected, grid.GetPixel(x, y));
            }
    }

    [Fact]
    public void SizesDefaultToANearSquare()
    {
        var five = Colors.Select(c => Solid(2, 2, c)).ToList();
        var grid = ImageGrid.Compose(five); // ceil(√5) = 3 columns, 2 rows
        Assert.Equal((6, 4), (grid.Width, grid.Height));
        Assert.Equal(SKColors.White, grid.GetPixel(5, 3)); // the sixth cell is empty
        Assert.Equal(Colors[4], grid.GetPixel(3, 3));

        var oneRow = ImageGrid.Compose(five, rows: 1);
        Assert.Equal((10, 2), (oneRow.Width, oneRow.Height));
        var oneColumn = ImageGrid.Compose(five, columns: 1);
        Assert.Equal((2, 10), (oneColumn.Width, oneColumn.Height));
        Assert.Equal(Colors[2], oneColumn.GetPixel(1, 5));
    }

    [Fact]
    public void SmallerImagesAreCenteredInTheirCells()
    {
        var grid = ImageGrid.Compose([Solid(4, 4, Colors[0]), Solid(2, 2, Colors[1])], columns: 2);
        Assert.Equal((8, 4), (grid.Width, grid.Height));
        // The 2x2 image sits at x 5..6, y 1..2 of the second 4x4 cell (which starts at x = 4).
        for (int y = 0; y < 4; y++)
            for (int x = 4; x < 8; x++)
                Assert.Equal(x is 5 or 6 && y is 1 or 2 ? Colors[1] : SKColors.White, grid.GetPixel(x, y));
    }

    [Fact]
    public void BadLayoutsAreArgumentErrors()
    {
        var images = Colors.Select(c => Solid(2, 2, c)).ToList();
        Assert.Throws<InvalidArgumentException>(() => ImageGrid.Compose([]));
        Assert.Throws<InvalidArgumentException>(() => ImageGrid.Compose(images, columns: 2, rows: 2));
        Assert.Throws<InvalidArgumentException>(() => ImageGrid.Compose(images, columns: -1));
        Assert.Throws<InvalidArgumentException>(() => ImageGrid.Compose(images, spacing: -1));
    }

    [Fact]
    public void WritesAPngThatDecodesToTheGrid()
    {
        var images = Colors.Select(c => Solid(3, 3, c)).ToList();
        string path = Path.Combine(_dir, "grid.png");
        ImageGrid.Write(path, images, columns: 5, text: [new("Title", "five colors")]);

        using var decoded = SKBitmap.Decode(path);
        Assert.Equal((15, 3), (decoded.Width, decoded.Height));
        for (int i = 0; i < 5; i++) Assert.Equal(Colors[i], decoded.GetPixel(i * 3 + 1, 1));
        Assert.Equal([new PngTextEntry("Title", "five colors", "tEXt")], PngText.Read(path));
    }
}
