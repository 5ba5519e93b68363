using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.ControlNets;

/// <summary>
/// Where a ControlNet's files are: <c>DIR/controlnet/model.onnx</c> (or <c>DIR/model.onnx</c>, a bare component folder as
/// OnnxStack ships them) and, since ONNX has no optional inputs, the UNet that takes its residuals: <c>DIR/unet/model.onnx</c>
/// when the folder ships one (models/tiny-shapes-controlnet does: the base UNet's weights with the residual inputs), else
/// the base model's own UNet, which must then take them.
/// </summary>
public sealed record ControlNetFolder(string Root, string ControlNetPath, string? UNetPath)
{
    /// <summary>The folder's name (for messages and PNG parameters).</summary>
    public string Name => System.IO.Path.GetFileName(Root.TrimEnd(System.IO.Path.DirectorySeparatorChar));

    public static ControlNetFolder Open(string path)
    {
        string root = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(root))
            throw new ModelFolderException(path, "ControlNet folder not found; pass a folder with controlnet/model.onnx (e.g. models/tiny-shapes-controlnet) to --control-model");
        string component = System.IO.Path.Combine(root, "controlnet", "model.onnx");
        string bare = System.IO.Path.Combine(root, "model.onnx");
        string model = File.Exists(component) ? component
            : File.Exists(bare) ? bare
            : throw new ModelFolderException(component, "is missing; a ControlNet folder holds controlnet/model.onnx (inputs sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale)");
        string unet = System.IO.Path.Combine(root, "unet", "model.onnx");
        return new ControlNetFolder(root, model, File.Exists(unet) ? unet : null);
    }

    /// <summary>
    /// The ControlNet that goes with a model folder when none is named: the model folder itself when it has a
    /// controlnet/ component, else the folder beside it named <c>MODEL-controlnet</c> (models/tiny-shapes →
    /// models/tiny-shapes-controlnet; for the default model also where <see cref="StableDiffusionPipeline.DefaultModel"/>
    /// is searched). Neither there: a <see cref="ModelFolderException"/> saying to pass --control-model.
    /// </summary>
    public static ControlNetFolder ForModel(string modelFolder)
    {
        string root = System.IO.Path.GetFullPath(modelFolder).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        if (File.Exists(System.IO.Path.Combine(root, "controlnet", "model.onnx"))) return Open(root);
        string beside = root + "-controlnet";
        if (File.Exists(System.IO.Path.Combine(beside, "controlnet", "model.onnx"))) return Open(beside);
        // The default model is copied beside the binaries without its ControlNet (not to grow every app by it): the
        // repository's models/tiny-shapes-controlnet, found as the default model is.
        string name = System.IO.Path.GetFileName(root);
        if (name == StableDiffusionPipeline.DefaultModelName && StableDiffusionPipeline.FindShippedFolder(name + "-controlnet") is { } shipped)
            return Open(shipped);
        throw new ModelFolderException(beside, $"no ControlNet for {System.IO.Path.GetFileName(root)} (neither {System.IO.Path.Combine(root, "controlnet")} nor this folder exists); pass --control-model DIR");
    }
}
