using System.CommandLine;
using System.Globalization;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff compress: a model folder or .onnx file in, a compressed copy out, with a per-tensor report.</summary>
public static class CompressCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("model") { Description = "a diffusers-style ONNX model folder or a .onnx file (never modified)" };
        var output = new Option<string>("--output", "-o") { Description = "the folder or .onnx file to write (must not exist unless --overwrite)", Required = true };
        var method = new Option<string>("--method") { Description = "linear, palettize, prune, or w8a8 (int8 weights and activations, calibrated on the model's own denoising runs)", DefaultValueFactory = _ => "palettize" };
        var bits = new Option<int>("--bits") { Description = "palettize: index bits (1, 2, 3, 4, 6, 8)", DefaultValueFactory = _ => 6 };
        var dtype = new Option<string>("--dtype") { Description = "linear: int8, uint8, int4 or uint4", DefaultValueFactory = _ => "int8" };
        var asymmetric = new Option<bool>("--asymmetric") { Description = "linear: zero point fitted to the range (default symmetric)" };
        var granularity = new Option<string?>("--granularity") { Description = "linear: per-tensor | per-channel | per-block; palettize: per-tensor | per-grouped-channel" };
        var blockSize = new Option<int>("--block-size") { Description = "linear per-block: 32, 64 or 128 (implies --granularity per-block)" };
        var groupSize = new Option<int>("--group-size") { Description = "palettize per-grouped-channel: output channels per table", DefaultValueFactory = _ => 16 };
        var channelScale = new Option<bool>("--per-channel-scale") { Description = "palettize: scale each output channel to [-1, 1] before clustering" };
        var sparsity = new Option<double>("--sparsity") { Description = "prune: fraction of weights set to zero, e.g. 0.5" };
        var nm = new Option<string?>("--n-m") { Description = "prune: keep N of every M weights, e.g. 2:4" };
        var then = new Option<string?>("--then") { Description = "prune: store the kept values with palettize or linear (using --bits / --dtype / --block-size)" };
        var seed = new Option<ulong>("--seed") { Description = "k-means seed", DefaultValueFactory = _ => 0 };
        var mixedBit = new Option<bool>("--mixed-bit") { Description = "choose bits per weight from measured sensitivity (with --target-bits or --target-psnr)" };
        var targetBits = new Option<double?>("--target-bits") { Description = "mixed-bit: parameter-weighted average bits, e.g. 4" };
        var targetPsnr = new Option<double?>("--target-psnr") { Description = "mixed-bit: lowest predicted output PSNR per component, in dB, e.g. 35" };
        var candidates = new Option<string?>("--candidate-bits") { Description = "mixed-bit widths to choose from (default palettize 8,6,4,2; linear 8,4)" };
        var samples = new Option<int>("--calibration-samples") { Description = "mixed-bit: fixed seeded inputs per component", DefaultValueFactory = _ => 2 };
        var calibrationSize = new Option<int?>("--calibration-size") { Description = "mixed-bit: latent height/width of the calibration inputs (default: the UNet's sample size, at most 32)" };
        var recipe = new Option<string?>("--recipe") { Description = "apply a saved per-tensor recipe (from --mixed-bit --save-recipe)" };
        var saveRecipe = new Option<string?>("--save-recipe") { Description = "mixed-bit: also write the chosen recipe to this JSON file" };
        var components = new Option<string?>("--components") { Description = "folder: comma-separated components to compress (default: all); the rest are copied" };
        var minElements = new Option<long>("--min-elements") { Description = "weights with fewer elements stay float", DefaultValueFactory = _ => 2048 };
        var includeOp = new Option<string[]>("--include-op") { Description = "only weights read by these op types (e.g. Conv MatMul)", AllowMultipleArgumentsPerToken = true };
        var excludeOp = new Option<string[]>("--exclude-op") { Description = "not weights read by these op types", AllowMultipleArgumentsPerToken = true };
        var includeName = new Option<string[]>("--include-name") { Description = "only weights whose name matches one of these wildcards (* and ?)", AllowMultipleArgumentsPerToken = true };
        var excludeName = new Option<string[]>("--exclude-name") { Description = "not weights whose name matches one of these wildcards", AllowMultipleArgumentsPerToken = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace an existing output (once the new one is complete)" };
        var json = new Option<bool>("--json") { Description = "print the report as JSON" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no progress output" };
        var calibrationPrompts = new Option<string?>("--calibration-prompts") { Description = "folders: a text file, one prompt per line, to calibrate the UNet's activations on (default: 8 built-in prompts)" };
        var calibrationSteps = new Option<int>("--calibration-steps") { Description = "folders: denoising steps per calibration prompt (every step's UNet input is recorded)", DefaultValueFactory = _ => 8 };
        var noCalibration = new Option<bool>("--no-calibration") { Description = "folders: do not record the UNet's activation ranges (then the compressed UNet cannot run on int8 kernels and runs its weights decompressed per call)" };
        var keepFloat = new Option<string[]>("--keep-float") { Description = "w8a8: layers (weight or node name wildcards) kept float, replacing the default time embedding / conv_in / conv_out / conv_shortcut list", AllowMultipleArgumentsPerToken = true };
        var lora = new Option<string[]>("--lora") { Description = "merge this LoRA (FILE or FILE:SCALE; repeatable) into the float32 weights first, then compress: a LoRA merged into quantized weights would lose its update to rounding" };
        var command = new Command("compress", "Compress weights (linear int8/int4, 1–8-bit palettization, pruning, joint, mixed-bit) into a standard ONNX copy that decompresses in the graph.")
        {
            input, output, method, bits, dtype, asymmetric, granularity, blockSize, groupSize, channelScale, sparsity, nm, then, seed,
            mixedBit, targetBits, targetPsnr, candidates, samples, calibrationSize, recipe, saveRecipe, components, minElements, includeOp, excludeOp,
            includeName, excludeName, overwrite, json, quiet, lora, calibrationPrompts, calibrationSteps, keepFloat, noCalibration,
        };
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            string source = result.GetValue(input)!;
            if (!Directory.Exists(source) && !File.Exists(source))
                throw new InvalidArgumentException("model", $"{source} does not exist; pass a model folder or a .onnx file");
            if (string.Equals(result.GetValue(method), "w8a8", StringComparison.OrdinalIgnoreCase))
                return W8A8(source, result.GetValue(output)!, result.GetValue(calibrationPrompts), result.GetValue(calibrationSteps),
                    result.GetValue(keepFloat), result.GetValue(components), result.GetValue(minElements), result.GetValue(overwrite),
                    result.GetValue(json), result.GetValue(quiet), cancellation);
            var spec = Spec(result.GetValue(method)!, result.GetValue(bits), result.GetValue(dtype)!, result.GetValue(asymmetric),
                result.GetValue(granularity), result.GetValue(blockSize), result.GetValue(groupSize), result.GetValue(channelScale),
                result.GetValue(sparsity), result.GetValue(nm), result.GetValue(then), result.GetValue(seed));
            var selection = new WeightSelection
            {
                MinimumElements = result.GetValue(minElements),
                IncludeOpTypes = result.GetValue(includeOp) ?? [],
                ExcludeOpTypes = result.GetValue(excludeOp) ?? [],
                IncludeNames = result.GetValue(includeName) ?? [],
                ExcludeNames = result.GetValue(excludeName) ?? [],
            }.Validate();
            bool isFolder = Directory.Exists(source);
            using var loraCopy = (result.GetValue(lora) ?? []) is { Length: > 0 } loraSpecs
                ? LoraSourceCopy.Make(source, isFolder, loraSpecs.Select(Lora.LoraAdapter.Parse).ToList(), quietRun: result.GetValue(quiet))
                : null;
            if (loraCopy is not null) source = loraCopy.Path;
            var chosen = result.GetValue(components) is { } list ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : null;
            if (chosen is not null && !isFolder) throw new InvalidArgumentException("--components", "only applies to a model folder");
            bool quietRun = result.GetValue(quiet);
            var log = quietRun ? null : new Progress<string>(m => Console.Error.WriteLine(m));

            CompressionRecipe? plan = null;
            if (result.GetValue(recipe) is { } recipeFile)
            {
                if (result.GetValue(mixedBit)) throw new InvalidArgumentException("--recipe", "give either --recipe or --mixed-bit, not both");
                plan = CompressionRecipe.Load(recipeFile);
            }
            else if (result.GetValue(mixedBit))
            {
                var widths = CandidateBits(result.GetValue(candidates), spec);
                plan = MixedBitRecipes.Plan(source, spec, widths, selection, chosen, result.GetValue(samples), result.GetValue(targetBits),
                    result.GetValue(targetPsnr), result.GetValue(calibrationSize) ?? CalibrationSize(source), log);
                if (result.GetValue(saveRecipe) is { } save) plan.Save(save);
            }
            else if (result.GetValue(targetBits) is not null || result.GetValue(targetPsnr) is not null)
                throw new InvalidArgumentException("--target-bits", "targets need --mixed-bit");
            else if (result.GetValue(saveRecipe) is not null)
                throw new InvalidArgumentException("--save-recipe", "only --mixed-bit makes a recipe");

            var encoderFor = EncoderChooser(spec, plan, source, result.GetValue(recipe) ?? "recipe");
            if (isFolder) ModelFolderCompressor.CheckFolderOutput(source, result.GetValue(output)!, result.GetValue(overwrite));
            var ranges = new Dictionary<string, ActivationRanges>(StringComparer.Ordinal);
            if (isFolder && !result.GetValue(noCalibration) && (chosen ?? ModelFolderCompressor.ComponentsOf(source)).Contains("unet")
                && File.Exists(Path.Combine(source, "text_encoder", ModelFolderCompressor.ModelFileName)))
                ranges["unet"] = CalibrateUNet(source, result.GetValue(calibrationPrompts), result.GetValue(calibrationSteps), new W8A8Options(), log: quietRun ? null : new ConsoleLines(Console.Error), cancellation);
            var options = new FolderCompressionOptions
            {
                ActivationRanges = ranges,
                Model = new ModelCompressionOptions { Selection = plan is null ? selection : selection with { MinimumElements = 0 } },
                Components = chosen,
                Overwrite = result.GetValue(overwrite),
            };
            var progress = quietRun ? null : new ConsoleCompressionProgress(Console.Error);
            var report = ModelFolderCompressor.Compress(source, result.GetValue(output)!, encoderFor, options, progress, cancellation);
            progress?.Finish();
            Console.Out.Write(result.GetValue(json) ? report.ToJson() + Environment.NewLine : report.ToTable());
            return 0;
        })));
        return command;
    }

    /// <summary>compress --method w8a8: record the UNet's trajectories on the float folder, calibrate, quantize.</summary>
    private static int W8A8(string source, string output, string? promptsFile, int steps, string[]? keepFloat, string? components,
        long minElements, bool overwrite, bool json, bool quiet, CancellationToken cancellation)
    {
        if (!Directory.Exists(source) || !File.Exists(Path.Combine(source, ModelFolderCompressor.ModelIndexFileName)))
            throw new InvalidArgumentException("model", $"{source} is not a model folder; w8a8 calibrates on the folder's own denoising runs, so it needs the whole SD folder");
        if (EdgeDiffusion.Pipelines.CascadeFolder.IsCascade(source))
            throw new InvalidArgumentException("--method", $"{source} is a Stable Cascade folder; w8a8 calibrates a Stable Diffusion UNet on its own denoising runs and has no Cascade calibration yet: use --method palettize or linear");
        var prompts = CalibrationPrompts(promptsFile, steps);
        var chosen = components?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? ["unet"];
        foreach (var c in chosen)
            if (c != "unet") throw new InvalidArgumentException("--components", $"'{c}': w8a8 calibrates the UNet on its denoising runs; only unet can be chosen");
        ModelFolderCompressor.CheckFolderOutput(source, output, overwrite);
        var options = new W8A8Options { MinimumElements = minElements };
        if (keepFloat is { Length: > 0 }) options = options with { KeepFloat = keepFloat };
        var log = quiet ? null : new ConsoleLines(Console.Error);
        using var trajectories = CalibrationTrajectories.Record(source, prompts, steps, progress: log, cancellation: cancellation);
        var progress = quiet ? null : new ConsoleCompressionProgress(Console.Error);
        var report = W8A8Quantizer.QuantizeFolder(source, output, (_, _) => new CalibrationSet(trajectories.Samples, trajectories.Description),
            options, chosen, overwrite, log, progress, cancellation);
        progress?.Finish();
        Console.Out.Write(json ? report.ToJson() + Environment.NewLine : report.ToTable());
        return 0;
    }

    private static IReadOnlyList<string>? CalibrationPrompts(string? promptsFile, int steps)
    {
        if (steps < 1) throw new InvalidArgumentException("--calibration-steps", $"{steps} must be at least 1");
        if (promptsFile is null) return null;
        if (!File.Exists(promptsFile)) throw new InvalidArgumentException("--calibration-prompts", $"{promptsFile} does not exist; give a text file with one prompt per line");
        IReadOnlyList<string> prompts = [.. File.ReadAllLines(promptsFile).Select(l => l.Trim()).Where(l => l.Length > 0)];
        if (prompts.Count == 0) throw new InvalidArgumentException("--calibration-prompts", $"{promptsFile} holds no prompts; write one per line");
        return prompts;
    }

    /// <summary>The float UNet's activation ranges on its own trajectories: what lets its compressed copy run on int8 kernels.</summary>
    private static ActivationRanges CalibrateUNet(string source, string? promptsFile, int steps, W8A8Options options, IProgress<string>? log, CancellationToken cancellation)
    {
        var prompts = CalibrationPrompts(promptsFile, steps);
        using var trajectories = CalibrationTrajectories.Record(source, prompts, steps, progress: log, cancellation: cancellation);
        using var unet = Onnx.OnnxModel.Load(Path.Combine(source, "unet", ModelFolderCompressor.ModelFileName));
        return W8A8Quantizer.Calibrate(unet, new CalibrationSet(trajectories.Samples, trajectories.Description), options, cancellation);
    }

    /// <summary>The spec the options describe, validated (a bad value names its option).</summary>
    internal static CompressionSpec Spec(string method, int bits, string dtype, bool asymmetric, string? granularity, int blockSize, int groupSize,
        bool channelScale, double sparsity, string? nm, string? then, ulong seed)
    {
        var kind = ParseMethod(method, "--method");
        var spec = new CompressionSpec { Method = kind, Seed = seed };
        spec = kind switch
        {
            CompressionMethod.Linear => Linear(spec, dtype, asymmetric, granularity, blockSize),
            CompressionMethod.Palettize => Palettize(spec, bits, granularity, groupSize, channelScale),
            _ => spec with { Sparsity = sparsity },
        };
        if (kind == CompressionMethod.Prune)
        {
            if (nm is not null)
            {
                var parts = nm.Split(':');
                if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out int n) || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out int m))
                    throw new InvalidArgumentException("--n-m", $"'{nm}' is not N:M; write e.g. 2:4");
                spec = spec with { N = n, M = m, Sparsity = 0 };
            }
            if (then is not null)
            {
                var inner = ParseMethod(then, "--then");
                var values = new CompressionSpec { Method = inner, Seed = seed };
                spec = spec with
                {
                    Then = inner == CompressionMethod.Linear
                        ? Linear(values, dtype, asymmetric, blockSize > 0 ? "per-block" : "per-tensor", blockSize)
                        : Palettize(values, bits, "per-tensor", groupSize, channelScale: false),
                };
            }
        }
        else if (then is not null || nm is not null)
            throw new InvalidArgumentException(then is not null ? "--then" : "--n-m", "only applies to --method prune");
        return spec.Validate();
    }

    private static CompressionMethod ParseMethod(string text, string option) => text.ToLowerInvariant() switch
    {
        "linear" => CompressionMethod.Linear,
        "palettize" or "palettization" => CompressionMethod.Palettize,
        "prune" or "pruning" => CompressionMethod.Prune,
        _ => throw new InvalidArgumentException(option, $"'{text}' is not a method; use linear, palettize or prune"),
    };

    private static CompressionSpec Linear(CompressionSpec spec, string dtype, bool asymmetric, string? granularity, int blockSize)
    {
        var type = dtype.ToLowerInvariant() switch
        {
            "int8" => QuantizedType.Int8, "uint8" => QuantizedType.UInt8, "int4" => QuantizedType.Int4, "uint4" => QuantizedType.UInt4,
            _ => throw new InvalidArgumentException("--dtype", $"'{dtype}' is not a type; use int8, uint8, int4 or uint4"),
        };
        var g = (granularity ?? (blockSize > 0 ? "per-block" : "per-channel")).ToLowerInvariant() switch
        {
            "per-tensor" => QuantizationGranularity.PerTensor,
            "per-channel" => QuantizationGranularity.PerChannel,
            "per-block" => QuantizationGranularity.PerBlock,
            _ => throw new InvalidArgumentException("--granularity", $"'{granularity}' does not apply to linear; use per-tensor, per-channel or per-block"),
        };
        if (g == QuantizationGranularity.PerBlock && blockSize == 0) blockSize = 32;
        return spec with { Dtype = type, Symmetric = !asymmetric, Granularity = g, BlockSize = g == QuantizationGranularity.PerBlock ? blockSize : 0 };
    }

    private static CompressionSpec Palettize(CompressionSpec spec, int bits, string? granularity, int groupSize, bool channelScale) =>
        spec with
        {
            Bits = bits,
            PaletteGranularity = (granularity ?? "per-tensor").ToLowerInvariant() switch
            {
                "per-tensor" => PaletteGranularity.PerTensor,
                "per-grouped-channel" => PaletteGranularity.PerGroupedChannel,
                _ => throw new InvalidArgumentException("--granularity", $"'{granularity}' does not apply to palettize; use per-tensor or per-grouped-channel"),
            },
            GroupSize = groupSize,
            PerChannelScale = channelScale,
        };

    /// <summary>Latent size for calibration inputs: the UNet's configured sample size, at most 32 (sensitivity, not quality).</summary>
    private static int CalibrationSize(string source) =>
        Math.Min(32, (Directory.Exists(source) ? ComponentConfig.SampleSize(Path.Combine(source, "unet")) : null) ?? 8);

    private static int[] CandidateBits(string? text, CompressionSpec spec)
    {
        if (text is null) return spec.Method == CompressionMethod.Linear ? [8, 4] : [8, 6, 4, 2];
        var widths = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            widths.Add(int.TryParse(part, CultureInfo.InvariantCulture, out int b) ? b : throw new InvalidArgumentException("--candidate-bits", $"'{part}' is not a number; write e.g. 8,6,4"));
        if (widths.Count < 2) throw new InvalidArgumentException("--candidate-bits", "give at least two widths, e.g. 8,6,4");
        foreach (int b in widths) MixedBitPlanner.WithBits(spec, b).Validate();
        return [.. widths.Distinct().OrderDescending()];
    }

    /// <summary>Per component and weight: the recipe's spec when there is a recipe, else the one spec for every selected weight.</summary>
    private static Func<string, WeightUse, IWeightEncoder?> EncoderChooser(CompressionSpec spec, CompressionRecipe? plan, string source, string recipeFile)
    {
        if (plan is not null) return plan.EncoderChooser(source, recipeFile);
        var encoder = WeightEncoders.Create(spec);
        return (_, _) => encoder;
    }
}

/// <summary>Progress lines written at once (Progress&lt;T&gt; posts them to the thread pool, where the last may come after the verb's output).</summary>
internal sealed class ConsoleLines(TextWriter error) : IProgress<string>
{
    public void Report(string value)
    {
        lock (this) error.WriteLine(value);
    }
}

/// <summary>"component: weight i/N" progress on stderr, redrawn in place on a terminal.</summary>
internal sealed class ConsoleCompressionProgress(TextWriter error) : IProgress<CompressionProgress>
{
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private string _lastComponent = "";

    public void Report(CompressionProgress p)
    {
        lock (this)
        {
            string line = $"{(p.Component.Length > 0 ? p.Component + ": " : "")}{p.Done}/{p.Total} {p.Weight}";
            if (_interactive) error.Write("\r" + (line.Length > 100 ? line[..100] : line.PadRight(100)));
            else if (p.Component != _lastComponent || p.Done == p.Total) error.WriteLine(line);
            _lastComponent = p.Component;
        }
    }

    public void Finish()
    {
        if (_interactive) error.WriteLine();
    }
}

/// <summary>
/// compress --lora: a private copy of the source with the LoRAs merged into its float32 UNet / text encoder, which is then
/// compressed instead of the source (never modified). Deleted when disposed.
/// </summary>
internal sealed class LoraSourceCopy : IDisposable
{
    private LoraSourceCopy(string root, string path)
    {
        _root = root;
        Path = path;
    }

    private readonly string _root;

    public string Path { get; }

    public static LoraSourceCopy Make(string source, bool isFolder, IReadOnlyList<Lora.LoraAdapter> adapters, bool quietRun)
    {
        if (!isFolder) throw new InvalidArgumentException("--lora", "needs a model folder (its unet/ and text_encoder/ are what LoRAs change), not a single .onnx file");
        var model = Pipelines.ModelFolder.Open(source);
        string root = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"edgediff-compress-lora-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var copy = new LoraSourceCopy(root, System.IO.Path.Combine(root, System.IO.Path.GetFileName(model.Root)));
        try
        {
            using var merged = Lora.MergedLoraModels.Prepare(model.Components, new Lora.LoraOptions(adapters));
            foreach (var file in Directory.EnumerateFiles(model.Root, "*", SearchOption.AllDirectories))
            {
                string relative = System.IO.Path.GetRelativePath(model.Root, file);
                string component = relative.Split(System.IO.Path.DirectorySeparatorChar)[0];
                if (merged.Changed(component) && relative.StartsWith(component + System.IO.Path.DirectorySeparatorChar + "model.onnx", StringComparison.Ordinal)) continue;
                string target = System.IO.Path.Combine(copy.Path, relative);
                Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
            foreach (var report in merged.Reports.Where(r => merged.Changed(r.Component)))
            {
                string from = System.IO.Path.GetDirectoryName(merged.PathFor(report.Component, ""))!;
                foreach (var file in Directory.EnumerateFiles(from)) File.Copy(file, System.IO.Path.Combine(copy.Path, report.Component, System.IO.Path.GetFileName(file)));
                if (!quietRun) Console.Error.WriteLine($"lora: {report.Applied} tensors merged into {report.Component} before compressing");
            }
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        try { if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true); }
        catch (IOException) { }
    }
}
