using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Pipelines;

public sealed record ComponentInspection(string Component, ModelInspection Model);

/// <summary>
/// Every component of a model folder inspected, with totals over the folder. <see cref="ParameterCount"/> is null when a
/// component's is (a compressed graph whose decompressed shapes are not known); <see cref="StoredValueCount"/> counts the
/// values stored.
/// </summary>
public sealed record ModelFolderInspection(string Root, IReadOnlyList<ComponentInspection> Components, long? ParameterCount, long ParameterBytes, long DiskBytes)
{
    public long StoredValueCount => Components.Sum(c => c.Model.StoredValueCount);

    public static ModelFolderInspection Inspect(string path)
    {
        var folder = ModelFolder.Open(path);
        var components = folder.Components.Select(c => new ComponentInspection(c.Key, ModelInspector.Inspect(c.Value))).ToList();
        long disk = Directory.EnumerateFiles(folder.Root, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        return new ModelFolderInspection(folder.Root, components,
            components.All(c => c.Model.ParameterCount is not null) ? components.Sum(c => c.Model.ParameterCount!.Value) : null, components.Sum(c => c.Model.ParameterBytes), disk);
    }
}
