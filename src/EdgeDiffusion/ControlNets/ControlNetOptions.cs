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
        settings = WithoutSpinning(settings);
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

    /// <summary>
    /// The ControlNet and UNet sessions run in turn, each with its own intra-op thread pool: a pool that spins after its
    /// run (ONNX Runtime's default) takes the cores from the other's next run. Explicit config entries win.
    /// </summary>
    private static SessionSettings WithoutSpinning(SessionSettings? settings)
    {
        settings ??= SessionSettings.Default;
        if (settings.ConfigEntries.ContainsKey(SpinningEntry)) return settings;
        var entries = new Dictionary<string, string>(settings.ConfigEntries) { [SpinningEntry] = "0" };
        return settings with { ConfigEntries = entries };
    }

    private const string SpinningEntry = "session.intra_op.allow_spinning";
}
