using EdgeDiffusion.ControlNets;

namespace EdgeDiffusion.Cli;

/// <summary>
/// generate's ControlNet options: the k-th --control-image goes with the k-th --control-model (default: the model's own
/// ControlNet, <see cref="ControlNetFolder.ForModel"/>), and with the k-th --control-scale/--control-start/--control-end,
/// or with the single one given for all. Checked (counts, ranges, folders) before any file is read or session made.
/// </summary>
internal sealed class ControlArguments
{
    private readonly string[] _images;
    private readonly double[] _scales, _starts, _ends;

    private ControlArguments(string[] images, ControlNetOptions options, double[] scales, double[] starts, double[] ends)
    {
        _images = images;
        Options = options;
        _scales = scales;
        _starts = starts;
        _ends = ends;
    }

    public ControlNetOptions Options { get; }

    /// <summary>Null without --control-image; the other ControlNet options without it are mistakes.</summary>
    public static ControlArguments? Parse(string[] images, string[] models, double[] scales, double[] starts, double[] ends, string modelFolder)
    {
        if (images.Length == 0)
        {
            foreach (var (values, name) in new[] { (models.Length, "--control-model"), (scales.Length, "--control-scale"), (starts.Length, "--control-start"), (ends.Length, "--control-end") })
                if (values > 0) throw new InvalidArgumentException(name, "needs a --control-image (the conditioning picture the ControlNet follows)");
            return null;
        }
        int n = images.Length;
        double[] PerImage(double[] given, string name, double fallback) =>
            given.Length == 0 ? Enumerable.Repeat(fallback, n).ToArray()
            : given.Length == 1 ? Enumerable.Repeat(given[0], n).ToArray()
            : given.Length == n ? given
            : throw new InvalidArgumentException(name, $"given {given.Length} times for {n} --control-image; give it once (for all) or once per --control-image");
        if (models.Length > 0 && models.Length != n)
            throw new InvalidArgumentException("--control-model", $"given {models.Length} times for {n} --control-image; give one --control-model per --control-image (or none for the model's own ControlNet)");
        var scale = PerImage(scales, "--control-scale", 1.0);
        var start = PerImage(starts, "--control-start", 0.0);
        var end = PerImage(ends, "--control-end", 1.0);
        for (int k = 0; k < n; k++) new ControlImage([], scale[k], start[k], end[k]).ValidateSettings(k);
        var folders = models.Length == 0
            ? Enumerable.Repeat(ControlNetFolder.ForModel(modelFolder), n).ToList()
            : models.Select(ControlNetFolder.Open).ToList();
        return new ControlArguments(images, new ControlNetOptions(folders), scale, start, end);
    }

    /// <summary>The control images, read and resized to the output size (an unreadable file is an ImageException naming it).</summary>
    public IReadOnlyList<ControlImage> LoadImages(int width, int height) =>
        _images.Select((path, k) => new ControlImage(ControlImage.Load(path, width, height), _scales[k], _starts[k], _ends[k])).ToList();
}
