namespace EdgeDiffusion.Schedulers;

/// <summary>A source of standard normal floats for stochastic schedulers and initial latents (see <see cref="GaussianNoise"/>).</summary>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> with independent N(0, 1) samples.</summary>
    void Fill(Span<float> destination);
}
