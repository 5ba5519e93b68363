using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.ControlNets;

/// <summary>The ControlNets a pipeline loads (see <see cref="ControlNetFolder"/>), in the order requests pair control images with them.</summary>
public sealed record ControlNetOptions(IReadOnlyList<ControlNetFolder> Folders)
{
    /// <summary>
    /// The residual-taking UNet (the first folder's unet/, else <paramref name="baseUNetPath"/>) and every ControlNet,
    /// checked against it. <paramref name="plan"/> fixes the UNet's symbolic sizes as for the plain UNet; the ControlNet
    /// sessions stay dynamic (their controlnet_cond has the pixel size, which exports often give the latent's dimension names).
    /// </summary>
    internal static ControlledUNet Open(ControlNetOptions options, string baseUNetPath, SessionSettings? settings, GenerationPlan? plan)
    {
        ArgumentNullException.ThrowIfNull(options);
        string unetPath = options.Folders[0].UNetPath ?? baseUNetPath;
        var unetSettings = plan is null ? settings : (settings ?? SessionSettings.Default) with
        {
            FreeDimensions = UNetShapes.FreeDimensions(unetPath, plan.Rows, plan.Height / 8, plan.Width / 8),
        };
        var unet = new OnnxUNet(unetPath, unetSettings);
        var controlNets = new List<OnnxControlNet>();
        try
        {
            if (unet.ResidualInputs.Count == 0)
                throw new ModelFolderException(unetPath, $"takes no ControlNet residuals (no input {Residuals.Mid}); ship a residual-taking UNet as {System.IO.Path.Combine(options.Folders[0].Root, "unet", "model.onnx")}");
            foreach (var folder in options.Folders) controlNets.Add(new OnnxControlNet(folder.ControlNetPath, unet, settings));
            return new ControlledUNet(unet, controlNets);
        }
        catch
        {
            foreach (var c in controlNets) c.Dispose();
            unet.Dispose();
            throw;
        }
    }
}
