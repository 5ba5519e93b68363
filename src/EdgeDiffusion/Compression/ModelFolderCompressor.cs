using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Compression;

/// <summary>Options of <see cref="ModelFolderCompressor"/>.</summary>
public sealed record FolderCompressionOptions
{
    /// <summary>Selection, Gemm rewrite and parallelism for each model (its Component is set per component).</summary>
    public ModelCompressionOptions Model { get; init; } = new();

    /// <summary>Components (sub-folders holding model.onnx) to compress; null for all. The others are copied as they are.</summary>
    public IReadOnlyList<string>? Components { get; init; }

    /// <summary>Replace an existing output (only once the new one is complete).</summary>
    public bool Overwrite { get; init; }

    /// <summary>Models whose weights exceed this many bytes are saved with external data (protobuf caps a file at 2 GB).</summary>
    public long InlineLimitBytes { get; init; } = (2L << 30) - (64L << 20);

    /// <summary>
    /// Calibrated activation ranges written into the metadata of the named components' compressed models, so they are
    /// served on int8 kernels (<see cref="Runtime.DecompressionMode.Int8"/>); measured on the float source.
    /// </summary>
    public IReadOnlyDictionary<string, ActivationRanges> ActivationRanges { get; init; } = new Dictionary<string, ActivationRanges>();
}

/// <summary>
/// Compresses a whole diffusers/optimum ONNX folder (model_index.json, one sub-folder per component with model.onnx and
/// maybe external data) into a new folder, or one .onnx file into another. Output is written under a temporary sibling
/// name and renamed into place when complete; the source is only read.
/// </summary>
public static class ModelFolderCompressor
{
    public const string ModelFileName = "model.onnx";
    public const string ModelIndexFileName = "model_index.json";

    /// <summary>A folder with model_index.json → <see cref="CompressFolder"/>; a file → <see cref="CompressFile"/>.</summary>
    public static CompressionReport Compress(string source, string output, Func<string, WeightUse, IWeightEncoder?> encoderFor,
        FolderCompressionOptions? options = null, IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new FolderCompressionOptions();
        if (Directory.Exists(source)) return CompressFolder(source, output, encoderFor, options, progress, cancellationToken);
        return CompressFile(source, output, use => encoderFor("", use), options, progress, cancellationToken);
    }

    /// <summary>The components of a model folder: sub-folders holding model.onnx, in name order.</summary>
    public static IReadOnlyList<string> ComponentsOf(string folder) =>
        [.. Directory.EnumerateDirectories(folder)
            .Where(d => File.Exists(Path.Combine(d, ModelFileName)))
            .Select(Path.GetFileName).OfType<string>()
            .Order(StringComparer.Ordinal)];

    /// <summary>Compresses each chosen component of <paramref name="source"/> into the new folder <paramref name="output"/>; every other file is copied.</summary>
    public static CompressionReport CompressFolder(string source, string output, Func<string, WeightUse, IWeightEncoder?> encoderFor,
        FolderCompressionOptions? options = null, IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(encoderFor);
        options ??= new FolderCompressionOptions();
        var modelOptions = options.Model;
        return TransformFolder(source, output,
            (component, loaded) =>
            {
                var compressed = ModelCompressor.Compress(loaded, use => encoderFor(component, use), modelOptions with { Component = component }, progress, cancellationToken);
                if (options.ActivationRanges.TryGetValue(component, out var ranges)) ranges.WriteTo(compressed.Model.Proto);
                return compressed;
            },
            options, cancellationToken);
    }

    /// <summary>
    /// Writes <paramref name="output"/>: each chosen component replaced by what <paramref name="transform"/> makes of it
    /// (given the component's name and its loaded model), every other file copied; through a temporary folder renamed into place.
    /// </summary>
    public static CompressionReport TransformFolder(string source, string output, Func<string, OnnxModel, CompressedModel> transform,
        FolderCompressionOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transform);
        options ??= new FolderCompressionOptions();
        string from = Path.GetFullPath(source).TrimEnd(Path.DirectorySeparatorChar);
        string to = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        if (!Directory.Exists(from)) throw new InvalidArgumentException("model", $"{source} is not a folder");
        if (!File.Exists(Path.Combine(from, ModelIndexFileName)))
            throw new InvalidArgumentException("model", $"{source} has no {ModelIndexFileName}; pass a diffusers ONNX folder or a .onnx file");
        CheckOutput(from, to, options.Overwrite, isFolder: true);

        var all = ComponentsOf(from);
        var chosen = options.Components ?? all;
        foreach (var c in chosen)
            if (!all.Contains(c, StringComparer.Ordinal))
                throw new InvalidArgumentException("--components", $"'{c}' is not a component of {source}; it has {string.Join(", ", all)}");

        string temp = TemporarySibling(to);
        try
        {
            Directory.CreateDirectory(temp);
            var rewritten = new HashSet<string>(StringComparer.Ordinal); // source files the compressed models replace
            var reports = new List<CompressionReport>();
            foreach (var component in chosen)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string model = Path.Combine(from, component, ModelFileName);
                using var loaded = OnnxModel.Load(model);
                rewritten.Add(model);
                foreach (var t in OnnxGraphs.AllTensors(loaded.Proto).Where(ExternalDataFiles.IsExternal))
                    rewritten.Add(loaded.External.Resolve(t).FullPath);
                using var compressed = transform(component, loaded);
                reports.Add(Save(loaded, compressed, Path.Combine(temp, component, ModelFileName), options.InlineLimitBytes));
            }
            foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            {
                if (rewritten.Contains(Path.GetFullPath(file))) continue;
                string target = Path.Combine(temp, Path.GetRelativePath(from, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
            Publish(temp, to, options.Overwrite);
            return CompressionReport.Combine(reports);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>Compresses one model file into <paramref name="output"/> (external data beside it when the source had some or it is large).</summary>
    public static CompressionReport CompressFile(string source, string output, Func<WeightUse, IWeightEncoder?> encoderFor,
        FolderCompressionOptions? options = null, IProgress<CompressionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(encoderFor);
        options ??= new FolderCompressionOptions();
        string from = Path.GetFullPath(source);
        string to = Path.GetFullPath(output);
        CheckOutput(from, to, options.Overwrite, isFolder: false);
        using var loaded = OnnxModel.Load(from);
        // Saving writes the model (and data file) under temporary names and renames them when complete.
        using var compressed = ModelCompressor.Compress(loaded, encoderFor, options.Model, progress, cancellationToken);
        return Save(loaded, compressed, to, options.InlineLimitBytes);
    }

    private static CompressionReport Save(OnnxModel source, CompressedModel compressed, string path, long inlineLimit)
    {
        bool sourceExternal = OnnxGraphs.AllTensors(source.Proto).Any(ExternalDataFiles.IsExternal);
        bool external = sourceExternal || compressed.Report.ModelBytesAfter > inlineLimit;
        compressed.Model.Save(path, external ? OnnxSaveOptions.External() : OnnxSaveOptions.Inline);
        return compressed.Report;
    }

    /// <summary>Checks a folder output before long work starts (not the source, not inside it, not existing unless overwriting).</summary>
    public static void CheckFolderOutput(string source, string output, bool overwrite) =>
        CheckOutput(Path.GetFullPath(source).TrimEnd(Path.DirectorySeparatorChar), Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar), overwrite, isFolder: true);

    private static void CheckOutput(string from, string to, bool overwrite, bool isFolder)
    {
        static bool Inside(string path, string folder) =>
            path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);
        if (string.Equals(from, to, StringComparison.Ordinal))
            throw new InvalidArgumentException("--output", "is the source itself; the source is never changed, choose another output");
        if (isFolder && Inside(to, from))
            throw new InvalidArgumentException("--output", $"{to} is inside the source folder {from}, which is never changed; choose a path outside it");
        if (Inside(from, to))
            throw new InvalidArgumentException("--output", $"{to} contains the source {from}; choose a path outside it");
        if ((File.Exists(to) || Directory.Exists(to)) && !overwrite)
            throw new InvalidArgumentException("--output", $"{to} already exists; choose another path or ask to overwrite it");
        if (!isFolder && Directory.Exists(to))
            throw new InvalidArgumentException("--output", $"{to} is a folder; give the output model's file name");
        if (isFolder && File.Exists(to))
            throw new InvalidArgumentException("--output", $"{to} is a file; a folder compresses into a folder");
    }

    private static string TemporarySibling(string path) =>
        Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");

    /// <summary>Moves the finished temporary output into place, replacing an old output only now that the new one is complete.</summary>
    private static void Publish(string temp, string to, bool overwrite)
    {
        if (overwrite && Directory.Exists(to)) Directory.Delete(to, recursive: true);
        Directory.Move(temp, to);
    }
}
