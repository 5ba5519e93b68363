using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// Noise for a batch in which image i has its own generator (seed + i): filling a whole-batch span fills each image's
/// slice from that image's stream, so an image does not depend on the batch it was made in.
/// </summary>
internal sealed class BatchNoise(IReadOnlyList<INoiseSource> perImage) : INoiseSource
{
    public void Fill(Span<float> destination)
    {
        int each = destination.Length / perImage.Count;
        for (int i = 0; i < perImage.Count; i++) perImage[i].Fill(destination.Slice(i * each, each));
    }
}
