namespace EdgeDiffusion.Pipelines;

/// <summary>
/// A diffusers/optimum-style ONNX model folder: model_index.json (optional) and one sub-folder per component
/// (text_encoder/, unet/, vae_decoder/, vae_encoder/; Stable Cascade: prior/, decoder/ …), each holding model.onnx.
/// </summary>
public sealed class ModelFolder
{
    private ModelFolder(string root, IReadOnlyDictionary<string, string> components)
    {
        Root = root;
        Components = components;
    }

    public string Root { get; }

    /// <summary>Component name → path of its model.onnx, in a stable order.</summary>
    public IReadOnlyDictionary<string, string> Components { get; }

    public string? ModelIndexPath => File.Exists(Path.Combine(Root, "model_index.json")) ? Path.Combine(Root, "model_index.json") : null;

    public static bool LooksLikeModelFolder(string path) =>
        Directory.Exists(path) && (File.Exists(Path.Combine(path, "model_index.json")) || FindComponents(path).Count > 0);

    public static ModelFolder Open(string path)
    {
        string root = Path.GetFullPath(path);
        if (!Directory.Exists(root))
            throw new ModelFolderException(path, "folder not found; pass a diffusers-style ONNX model folder (with unet/model.onnx, text_encoder/model.onnx …)");
        var components = FindComponents(root);
        if (components.Count == 0)
            throw new ModelFolderException(path, "holds no component folder with a model.onnx; expected e.g. unet/model.onnx, text_encoder/model.onnx, vae_decoder/model.onnx");
        return new ModelFolder(root, components);
    }

    /// <summary>The model.onnx of a component, or a typed error naming the missing file.</summary>
    public string RequireComponent(string name) =>
        Components.TryGetValue(name, out var path)
            ? path
            : throw new ModelFolderException(Path.Combine(Root, name, "model.onnx"), $"component '{name}' is missing; this folder has: {string.Join(", ", Components.Keys)}");

    private static Dictionary<string, string> FindComponents(string root)
    {
        var found = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var dir in Directory.EnumerateDirectories(root))
        {
            string model = Path.Combine(dir, "model.onnx");
            if (File.Exists(model)) found[Path.GetFileName(dir)] = model;
        }
        return new Dictionary<string, string>(found);
    }
}

/// <summary>A model folder is missing, incomplete or holds something unexpected.</summary>
public sealed class ModelFolderException(string path, string problem) : EdgeDiffusionException($"{path}: {problem}")
{
    public string Path { get; } = path;
}
