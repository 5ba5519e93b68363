using EdgeDiffusion.Bench.Shapes;

namespace EdgeDiffusion.Tests.Bench;

public sealed class ShapeClassifierTests
{
    private static readonly Dictionary<string, int[]> Palette = new()
    {
        ["red"] = [220, 40, 40], ["green"] = [40, 180, 60], ["blue"] = [40, 80, 220], ["yellow"] = [240, 220, 40],
        ["white"] = [245, 245, 245], ["black"] = [20, 20, 20],
    };

    /// <summary>A 64×64 picture drawn from geometry: <paramref name="inside"/> decides which pixel centres the shape covers.</summary>
    private static byte[] Draw(string background, string color, Func<double, double, bool> inside)
    {
        var rgba = new byte[64 * 64 * 4];
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
            {
                var c = Palette[inside(x + 0.5, y + 0.5) ? color : background];
                int i = (y * 64 + x) * 4;
                (rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]) = ((byte)c[0], (byte)c[1], (byte)c[2], 255);
            }
        return rgba;
    }

    [Fact]
    public void ReadsCircleSquareAndTriangleByTheirFillRatios()
    {
        var classifier = new ShapeClassifier(Palette);
        // Circle of radius 14 at the centre: fill π/4 of its bounding box.
        var circle = classifier.Read(Draw("blue", "red", (x, y) => (x - 32) * (x - 32) + (y - 32) * (y - 32) <= 14 * 14), 64, 64);
        Assert.Equal(("blue", "red", "circle", "center"), (circle.Background, circle.Color, circle.Shape, circle.Position));
        Assert.InRange(circle.FillRatio, Math.PI / 4 - 0.04, Math.PI / 4 + 0.04);

        var square = classifier.Read(Draw("white", "green", (x, y) => x is >= 4 and < 20 && y is >= 4 and < 20), 64, 64);
        Assert.Equal(("white", "green", "square", "top left"), (square.Background, square.Color, square.Shape, square.Position));
        Assert.Equal(1.0, square.FillRatio, 3);

        // Upward isosceles triangle, base 30 at y = 58, apex at y = 28: half its bounding box.
        var triangle = classifier.Read(Draw("yellow", "black", (x, y) => y <= 58 && y >= 28 && Math.Abs(x - 48) <= (y - 28) / 2), 64, 64);
        Assert.Equal(("yellow", "black", "triangle", "bottom right"), (triangle.Background, triangle.Color, triangle.Shape, triangle.Position));
        Assert.InRange(triangle.FillRatio, 0.45, 0.58);
    }

    [Fact]
    public void TwoShapesAreJudgedByTheLargerOne()
    {
        var classifier = new ShapeClassifier(Palette);
        var two = classifier.Read(Draw("black", "yellow", (x, y) => (x is >= 6 and < 22 || x is >= 40 and < 60) && y is >= 20 && y < 40), 64, 64);
        Assert.Equal("square", two.Shape);
        Assert.Equal("yellow", two.Color);
    }

    [Fact]
    public void AnEmptyPictureHasNoShape()
    {
        var reading = new ShapeClassifier(Palette).Read(Draw("red", "red", (_, _) => false), 64, 64);
        Assert.Equal("red", reading.Background);
        Assert.Null(reading.Shape);
        Assert.Null(reading.Color);
    }

    [Theory]
    [InlineData(0.1, 0.1, "top left")]
    [InlineData(0.5, 0.5, "center")]
    [InlineData(0.9, 0.5, "right")]
    [InlineData(0.5, 0.9, "bottom")]
    [InlineData(0.8, 0.2, "top right")]
    public void PositionsFollowTheThreeByThreeGrid(double fx, double fy, string expected) =>
        Assert.Equal(expected, ShapeClassifier.PositionOf(fx, fy));
}

public sealed class ShapeDrawingTests
{
    private static HeldOutSet Set => HeldOutSet.Load(Path.Combine(TestData.RepoRoot, "training", "tiny-shapes", "heldout.json"));

    [Fact]
    public void HeldOutPicturesDrawnExactlyReadAsTheirCaptions()
    {
        // The drawing matches data.py's (4x4 coverage, blended, rounded) and the classifier reads every colour and shape
        // of it right; positions only where the centroid falls in the named third (a large triangle's centroid sits
        // lower than its bounding-box centre, so "top" ones read as the middle row).
        var score = ShapesEvaluation.Drawn(Set);
        Assert.Equal(72, score.Images);
        Assert.Equal((1.0, 1.0, 1.0), (score.Background, score.Color, score.Shape));
        Assert.True(score.Position >= 0.9, score.ToString());
    }

    [Fact]
    public void DrawsShapesWithTheirAreasAndAntiAliasedEdges()
    {
        var set = Set;
        var caption = new HeldOutCaption("a large red triangle in the center on a white background", "triangle", 1, "red", "white", "center", "large");
        var image = ShapeDrawing.Draw(set, caption);
        int red = 0, mixed = 0;
        for (int i = 0; i < image.Pixels.Length; i += 4)
        {
            if (image.Pixels[i + 1] == 30) red++;          // pure foreground (220, 30, 30)
            else if (image.Pixels[i + 1] != 245) mixed++;  // edge pixels between foreground and white
        }
        // 30 px box: area 450 px², split between fully covered and edge pixels.
        Assert.InRange(red + mixed / 2.0, 420, 480);
        Assert.True(mixed > 40, $"{mixed} edge pixels");
        Assert.True(ShapeDrawing.Inside("circle", 10, 0, 10) && !ShapeDrawing.Inside("circle", 8, 8, 10));
        Assert.True(ShapeDrawing.Inside("square", 8, 8, 10) && !ShapeDrawing.Inside("triangle", 8, -8, 10));
    }
}
