using System.Text.Json;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// The config.json diffusers/optimum write beside each exported component: the VAE's latent scaling_factor (SD's
/// 0.18215 when absent) and the UNet's sample_size (the latent size it was trained at).
/// </summary>
public static class ComponentConfig
{
    public const float DefaultScalingFactor = 0.18215f;

    public static float ScalingFactor(string componentFolder) =>
        Read<float>(componentFolder, "scaling_factor", e => e.TryGetSingle(out float f) && f > 0 ? f : null) ?? DefaultScalingFactor;

    public static int? SampleSize(string componentFolder) =>
        Read<int>(componentFolder, "sample_size", e => e.TryGetInt32(out int v) && v > 0 ? v : null);

    private static T? Read<T>(string componentFolder, string key, Func<JsonElement, T?> parse) where T : struct
    {
        string config = Path.Combine(componentFolder, "config.json");
        if (!File.Exists(config)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(key, out var e) && e.ValueKind == JsonValueKind.Number ? parse(e) : null;
        }
        catch (JsonException e)
        {
            throw new ModelFolderException(config, $"is not valid JSON ({e.Message}); fix or delete it");
        }
    }
}

/// <summary>AutoencoderKL decoder (optimum: latent_sample → sample), one image per call to bound memory.</summary>
public sealed class OnnxVaeDecoder : IImageDecoder
{
    private readonly InferenceSession _session;
    private readonly string _output;

    public OnnxVaeDecoder(string modelPath, SessionSettings? settings = null)
    {
        _session = SessionFactory.Create(modelPath, settings);
        SessionMetadata.RequireFloat(SessionMetadata.Input(_session, "latent_sample", modelPath), "latent_sample", modelPath);
        _output = _session.OutputNames.Contains("sample") ? "sample" : _session.OutputNames[0];
        ScalingFactor = ComponentConfig.ScalingFactor(Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
    }

    public float ScalingFactor { get; }

    public float[] Decode(ReadOnlySpan<float> latents, int latentChannels, int latentHeight, int latentWidth)
    {
        using var input = new OrtBinding<float>([1, latentChannels, latentHeight, latentWidth]);
        float inverse = 1f / ScalingFactor;
        for (int i = 0; i < input.Data.Length; i++) input.Data[i] = latents[i] * inverse;
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, ["latent_sample"], [input.Value], [_output]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>
/// AutoencoderKL encoder (optimum: sample → latent_sample). Exports give either the sampled latents (4 channels) or
/// the distribution's parameters (mean ‖ log-variance, 8 channels); the mean is used then, so img2img is deterministic.
/// </summary>
public sealed class OnnxVaeEncoder : IImageEncoder
{
    private readonly InferenceSession _session;
    private readonly string _path;
    private readonly string _output;

    public OnnxVaeEncoder(string modelPath, SessionSettings? settings = null)
    {
        _path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        SessionMetadata.RequireFloat(SessionMetadata.Input(_session, "sample", modelPath), "sample", modelPath);
        _output = _session.OutputNames[0];
        ScalingFactor = ComponentConfig.ScalingFactor(Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
    }

    public float ScalingFactor { get; }

    public float[] Encode(ReadOnlySpan<float> image, int height, int width, out int latentChannels)
    {
        using var input = new OrtBinding<float>([1, 3, height, width]);
        image.CopyTo(input.Data);
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, ["sample"], [input.Value], [_output]);
        var shape = outputs[0].GetTensorTypeAndShape().Shape;
        if (shape.Length != 4) throw new ModelFolderException(_path, $"output has shape [{string.Join(",", shape)}]; expected [1, channels, h, w]");
        int channels = (int)shape[1];
        latentChannels = channels == 8 ? 4 : channels;
        int size = latentChannels * (int)shape[2] * (int)shape[3];
        var latents = outputs[0].GetTensorDataAsSpan<float>()[..size].ToArray();
        for (int i = 0; i < latents.Length; i++) latents[i] *= ScalingFactor;
        return latents;
    }

    public void Dispose() => _session.Dispose();
}
