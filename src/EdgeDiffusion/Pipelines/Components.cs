namespace EdgeDiffusion.Pipelines;

// The pieces a pipeline composes, as in Apple's ml-stable-diffusion: each is a small interface over one model,
// so a pipeline can run ONNX Runtime sessions, compressed variants or test doubles alike.

/// <summary>Token ids → hidden states.</summary>
public interface ITextEncoder : IDisposable
{
    /// <summary>Encodes each id sequence; returns [count, sequence, width] flattened.</summary>
    float[] Encode(IReadOnlyList<int[]> ids, out int sequence, out int width);
}

/// <summary>
/// What a denoising loop calls once its conditioning is set: the model output for all rows (images × guidance halves) at
/// one timestep. SD's UNet and each Stable Cascade stage are one.
/// </summary>
public interface INoisePredictor : IDisposable
{
    /// <summary>Predicts the model output for all rows at <paramref name="timestep"/>. Allocates nothing.</summary>
    void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output);

    /// <summary>Time spent inside the model runtime so far (not in copies around it): what the pipeline's overhead is measured against.</summary>
    TimeSpan ModelTime { get; }

    /// <summary>Model calls made so far.</summary>
    int ModelCalls { get; }
}

/// <summary>The SD noise predictor (UNet). Callers give all rows (images × guidance halves); the denoiser batches them as its model allows.</summary>
public interface IDenoiser : INoisePredictor
{
    int LatentChannels { get; }

    /// <summary>Fixes the rows' conditioning and the latent size for the calls that follow (once per generation).</summary>
    void SetConditioning(ReadOnlySpan<float> hiddenStates, int rows, int sequence, int width, int latentHeight, int latentWidth);
}

/// <summary>Latents of one image → pixels [3, height, width] in [-1, 1].</summary>
public interface IImageDecoder : IDisposable
{
    float[] Decode(ReadOnlySpan<float> latents, int latentChannels, int latentHeight, int latentWidth);
}

/// <summary>Pixels of one image [3, height, width] in [-1, 1] → latents [channels, height/8, width/8], already scaled.</summary>
public interface IImageEncoder : IDisposable
{
    float[] Encode(ReadOnlySpan<float> image, int height, int width, out int latentChannels);
}
