namespace EdgeDiffusion.Imaging;

/// <summary>Horizontal bar charts as PNG bytes (ScottPlot), first label at the top; used by the profile and bench reports.</summary>
public static class BarChart
{
    public static byte[] Png(IReadOnlyList<string> labels, IReadOnlyList<double> values, string title, string valueLabel)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(values);
        if (labels.Count != values.Count) throw new ArgumentException($"{labels.Count} labels for {values.Count} values", nameof(values));
        var plot = new ScottPlot.Plot();
        if (ChartFont.Value is { } font) plot.Font.Set(font);
        var bars = plot.Add.Bars(values.Reverse().ToArray());
        bars.Horizontal = true;
        var positions = Enumerable.Range(0, labels.Count).Select(i => (double)i).ToArray();
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, labels.Reverse().ToArray());
        plot.Axes.Margins(left: 0);
        plot.Title(title);
        plot.XLabel(valueLabel);
        return plot.GetImageBytes(800, 120 + 28 * Math.Max(labels.Count, 1), ScottPlot.ImageFormat.Png);
    }

    /// <summary>
    /// SkiaSharp's Linux "NoDependencies" native build has no fontconfig, so it sees no system font and ScottPlot would
    /// draw charts without any text: register a TrueType file from the usual font folders instead.
    /// </summary>
    private static readonly Lazy<string?> ChartFont = new(() =>
    {
        if (SkiaSharp.SKFontManager.Default.FontFamilies.Any(f => f.Length > 0)) return null; // system fonts work: keep ScottPlot's choice
        string[] folders = ["/usr/share/fonts", "/usr/local/share/fonts", Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".fonts")];
        string[] preferred = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "Arial.ttf"];
        var files = folders.Where(Directory.Exists).SelectMany(f =>
        {
            try { return Directory.EnumerateFiles(f, "*.ttf", SearchOption.AllDirectories).ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
        }).ToList();
        string? file = preferred.Select(p => files.FirstOrDefault(f => Path.GetFileName(f) == p)).FirstOrDefault(f => f is not null) ?? files.FirstOrDefault();
        if (file is null) return null;
        ScottPlot.Fonts.AddFontFile("EdgeDiffusionChart", file);
        return "EdgeDiffusionChart";
    });
}
