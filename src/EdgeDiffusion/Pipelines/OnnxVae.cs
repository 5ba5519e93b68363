using System.Text.Json;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Pipelines;

/// <summary>The VAE's latent scaling factor: from the component's config.json when it says, else SD's 0.18215.</summary>
public static class VaeConfig
{
    public const float DefaultScalingFactor = 0.18215f;

    public static float ScalingFactor(string componentFolder)
    {
        string config = Path.Combine(componentFolder, "config.json");
        if (!File.Exists(config)) return DefaultScalingFactor;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            return doc.RootElement.TryGetProperty("scaling_factor", out var f) && f.ValueKind == JsonValueKind.Number
                ? f.GetSingle()
                : DefaultScalingFactor;
        }
        catch (JsonException e)
        {
            throw new ModelFolderException(config, $"is not valid JSON ({e.Message}); fix or delete it (the default scaling factor {DefaultScalingFactor} is then used)");
        }
    }
}

/// <summary>The UNet's config.json (diffusers writes it beside an export): sample_size is the latent size it was trained at.</summary>
public static class UNetConfig
{
    public static int? SampleSize(string componentFolder)
    {
        string config = Path.Combine(componentFolder, "config.json");
        if (!File.Exists(config)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            return doc.RootElement.TryGetProperty("sample_size", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt32(out int v) && v > 0 ? v : null;
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
        ScalingFactor = VaeConfig.ScalingFactor(Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
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
        ScalingFactor = VaeConfig.ScalingFactor(Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
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
