using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// The UNet's symbolic dimensions bound to the sizes one generation will use (batch rows, latent height and width,
/// sequence length), read from the model's own input declarations, so ONNX Runtime can plan a static-shaped graph
/// (AddFreeDimensionOverrideByName). A session made this way accepts only those sizes.
/// </summary>
public static class UNetShapes
{
    public static IReadOnlyDictionary<string, long> FreeDimensions(string unetPath, int rows, int latentHeight, int latentWidth, int sequence = 77)
    {
        using var model = OnnxModel.Load(unetPath);
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        void Bind(string input, params long[] sizes)
        {
            var dims = model.Graph.Input.FirstOrDefault(i => i.Name == input)?.Type?.TensorType?.Shape?.Dim;
            if (dims is null) return;
            for (int i = 0; i < Math.Min(dims.Count, sizes.Length); i++)
                if (dims[i].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam && sizes[i] > 0)
                    result[dims[i].DimParam] = sizes[i];
        }
        Bind("sample", rows, 0, latentHeight, latentWidth);
        Bind("encoder_hidden_states", rows, sequence);
        Bind("timestep", rows);
        return result;
    }
}
