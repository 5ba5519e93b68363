using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Lora;

/// <summary>LoRAs to merge when a pipeline loads, and whether keys that match no weight may be skipped.</summary>
public sealed record LoraOptions(IReadOnlyList<LoraAdapter> Adapters, bool Partial = false);

/// <summary>
/// The components a set of LoRAs changes (unet, text_encoder), merged once into copies in a private temporary folder
/// (the model folder is never modified) that live as long as this object. Every LoRA key must match a weight of the model
/// unless <see cref="LoraOptions.Partial"/> is set; a LoRA none of whose keys match is an error either way.
/// </summary>
public sealed class MergedLoraModels : IDisposable
{
    private readonly Dictionary<string, string> _paths = new(StringComparer.Ordinal);
    private readonly string _directory;

    private MergedLoraModels(string directory, IReadOnlyList<LoraMergeReport> reports)
    {
        _directory = directory;
        Reports = reports;
    }

    public IReadOnlyList<LoraMergeReport> Reports { get; }

    /// <summary>The merged copy of <paramref name="component"/>'s model, or <paramref name="original"/> when no LoRA touches it.</summary>
    public string PathFor(string component, string original) => _paths.TryGetValue(component, out var path) ? path : original;

    /// <summary>Whether <paramref name="component"/> was merged (its session must not use the session cache: the copy is new each run).</summary>
    public bool Changed(string component) => _paths.ContainsKey(component);

    /// <param name="components">component name → model.onnx of the folder.</param>
    public static MergedLoraModels Prepare(IReadOnlyDictionary<string, string> components, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string directory = Path.Combine(Path.GetTempPath(), $"edgediff-lora-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var reports = new List<LoraMergeReport>();
        var merged = new MergedLoraModels(directory, reports);
        try
        {
            foreach (var component in options.Adapters.SelectMany(a => a.Layers).Select(l => l.Component).Distinct().Order(StringComparer.Ordinal))
            {
                if (!components.TryGetValue(component, out var source))
                {
                    var file = options.Adapters.First(a => a.Layers.Any(l => l.Component == component)).Path;
                    throw new InvalidArgumentException("--lora", $"{file} changes the {component}, which this model folder does not have");
                }
                using var model = OnnxModel.Load(source);
                var report = LoraMerger.Merge(model, component, options.Adapters);
                reports.Add(report);
                if (report.Applied == 0) continue;
                string target = Path.Combine(directory, component, "model.onnx");
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                model.Save(target, OnnxSaveOptions.External(1 << 20));
                merged._paths[component] = target;
            }
            foreach (var adapter in options.Adapters)
            {
                var keys = adapter.Layers.Select(l => l.Key).ToHashSet(StringComparer.Ordinal);
                var missed = reports.SelectMany(r => r.Unmatched).Where(keys.Contains).ToList();
                int applied = keys.Count - missed.Count;
                if (applied == 0)
                    throw new InvalidArgumentException("--lora", $"{adapter.Path}: none of its {keys.Count} tensors match a weight of this model (first: {missed.FirstOrDefault()}); it was made for another architecture");
                if (missed.Count > 0 && !options.Partial)
                    throw new InvalidArgumentException("--lora", $"{adapter.Path}: {missed.Count} of {keys.Count} tensors match no weight of this model (first: {string.Join(", ", missed.Take(3))}); " +
                        $"pass --lora-partial to apply the {applied} that do");
            }
            return merged;
        }
        catch
        {
            merged.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        try { if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
