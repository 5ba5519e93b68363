using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeDiffusion.Compression;

/// <summary>What to do to each named weight of one component (a model file).</summary>
public sealed record ComponentRecipe
{
    /// <summary>Initializer name → spec. Weights not listed stay as they are.</summary>
    public Dictionary<string, CompressionSpec> Tensors { get; init; } = new(StringComparer.Ordinal);

    /// <summary>Parameter-weighted average bits over the listed tensors (informative).</summary>
    public double AverageBits { get; init; }

    /// <summary>The planner's predicted output PSNR of the component in dB (informative).</summary>
    public double? PredictedPsnrDb { get; init; }
}

/// <summary>
/// A saved per-tensor compression plan, as the mixed-bit planner writes it and <c>edgediff compress --recipe</c>
/// re-applies it: component name (the folder of a diffusers model, e.g. "unet", or "model" for a single file) →
/// tensor name → spec.
/// </summary>
public sealed record CompressionRecipe
{
    public const int CurrentVersion = 1;
    public const string SingleModelComponent = "model";

    public int Version { get; init; } = CurrentVersion;

    /// <summary>How the recipe was made (the command line or planner target), for people reading it.</summary>
    public string Description { get; init; } = "";

    public Dictionary<string, ComponentRecipe> Components { get; init; } = new(StringComparer.Ordinal);

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Writes the recipe to a temporary file beside <paramref name="path"/> and renames it.</summary>
    public void Save(string path) => IO.OutputFile.WriteText(path, ToJson(), "--save-recipe");

    /// <summary>Reads and validates a recipe; any problem is an <see cref="InvalidArgumentException"/> naming the file.</summary>
    public static CompressionRecipe Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidArgumentException("--recipe", $"{path} does not exist; write one with `edgediff compress --mixed-bit … --save-recipe FILE`");
        CompressionRecipe? recipe;
        try
        {
            recipe = JsonSerializer.Deserialize<CompressionRecipe>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidArgumentException("--recipe", $"{path} is not a valid recipe ({e.Message}); regenerate it with --mixed-bit --save-recipe");
        }
        if (recipe is null || recipe.Components is null || recipe.Components.Count == 0)
            throw new InvalidArgumentException("--recipe", $"{path} lists no components; regenerate it with --mixed-bit --save-recipe");
        if (recipe.Version != CurrentVersion)
            throw new InvalidArgumentException("--recipe", $"{path} has version {recipe.Version}; this edgediff reads version {CurrentVersion}");
        foreach (var (component, part) in recipe.Components)
            foreach (var (tensor, spec) in part.Tensors ?? [])
            {
                if (spec is null) throw new InvalidArgumentException("--recipe", $"{path}: {component}/{tensor} has no spec");
                try { spec.Validate(); }
                catch (InvalidArgumentException e) { throw new InvalidArgumentException("--recipe", $"{path}: {component}/{tensor}: {e.Message}"); }
            }
        return recipe;
    }

    /// <summary>
    /// The recipe's specs for <paramref name="component"/>; every tensor it names must be among <paramref name="weightNames"/>
    /// (the model's float initializers), else the recipe was made for another model.
    /// </summary>
    public ComponentRecipe For(string component, IReadOnlyCollection<string> weightNames, string recipeFile = "recipe")
    {
        if (!Components.TryGetValue(component, out var part))
            return new ComponentRecipe();
        var known = weightNames as ISet<string> ?? new HashSet<string>(weightNames, StringComparer.Ordinal);
        var unknown = part.Tensors.Keys.Where(n => !known.Contains(n)).Take(3).ToList();
        if (unknown.Count > 0)
            throw new InvalidArgumentException("--recipe", $"{recipeFile}: {component} has no weight named {string.Join(", ", unknown.Select(n => $"'{n}'"))}; the recipe was made for another model");
        return part;
    }

    /// <summary>
    /// The encoder for each component's weight as the recipe says, null for weights it does not list (one encoder per
    /// distinct spec). The first time a component comes up, the tensor names the recipe gives it are checked (see
    /// <see cref="For"/>) against the initializers of its model, read from the graph outline. <paramref name="source"/>
    /// is the model folder, or the single model file (component "" as <see cref="ModelFolderCompressor"/> passes it).
    /// </summary>
    public Func<string, WeightUse, IWeightEncoder?> EncoderChooser(string source, string recipeFile)
    {
        var encoders = new Dictionary<CompressionSpec, IWeightEncoder>();
        var parts = new Dictionary<string, ComponentRecipe>(StringComparer.Ordinal);
        return (component, use) =>
        {
            ComponentRecipe part;
            lock (parts)
            {
                if (!parts.TryGetValue(component, out part!))
                {
                    string file = component.Length == 0 ? source : Path.Combine(source, component, ModelFolderCompressor.ModelFileName);
                    var names = Onnx.OnnxModel.ReadGraphOutline(file).Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
                    parts[component] = part = For(component.Length == 0 ? SingleModelComponent : component, names, recipeFile);
                }
            }
            if (!part.Tensors.TryGetValue(use.Name, out var spec)) return null;
            lock (encoders)
            {
                if (!encoders.TryGetValue(spec, out var encoder)) encoders[spec] = encoder = WeightEncoders.Create(spec);
                return encoder;
            }
        };
    }
}
