using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.ControlNets;

/// <summary>One ControlNet residual a UNet takes: its input name and channel count (null when the model leaves it symbolic).</summary>
public sealed record ResidualInput(string Name, int? Channels);

/// <summary>The names OnnxStack and optimum give a ControlNet's outputs and the UNet's matching inputs.</summary>
public static partial class Residuals
{
    public const string Mid = "mid_block_additional_residual";

    /// <summary>down_block_{i}_additional_residual or mid_block_additional_residual.</summary>
    public static bool IsResidualName(string name) => name == Mid || DownName().IsMatch(name);

    internal static int? Channels(NodeMetadata meta) =>
        meta.Dimensions.Length == 4 && meta.Dimensions[1] > 0 ? meta.Dimensions[1] : null;

    [GeneratedRegex(@"^down_block_\d+_additional_residual$")]
    private static partial Regex DownName();
}
