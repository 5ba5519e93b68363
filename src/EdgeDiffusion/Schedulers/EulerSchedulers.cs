using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Euler (diffusers' EulerDiscreteScheduler, Karras et al. 2022 Algorithm 2 without churn): the probability-flow ODE
/// dx/dσ = (x − x_0)/σ, integrated with one Euler step from σ_i to σ_{i+1}. Deterministic.
/// </summary>
public sealed class EulerDiscreteScheduler(SchedulerConfig config) : SigmaSchedulerBase("euler", config)
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        double sigma = SigmaAt(stepIndex), dt = SigmaAt(stepIndex + 1) - sigma;
        var type = Config.PredictionType;
        for (int i = 0; i < sample.Length; i++)
        {
            double x = sample[i];
            double derivative = (x - X0(type, modelOutput[i], x, sigma)) / sigma;
            sample[i] = (float)(x + derivative * dt);
        }
    }
}

/// <summary>
/// Euler ancestral (diffusers' EulerAncestralDiscreteScheduler, k-diffusion sample_euler_ancestral with η = 1):
/// an Euler step down to σ_down, then fresh noise of scale σ_up, where σ_up = √(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²) and
/// σ_down = √(σ_{i+1}² − σ_up²) so that the marginal variance at σ_{i+1} is right. Draws noise at every step.
/// </summary>
public sealed class EulerAncestralDiscreteScheduler(SchedulerConfig config) : SigmaSchedulerBase("euler-a", config)
{
    protected override bool ExtendedOptions => false;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void StepCore(ReadOnlySpan<float> modelOutput, int stepIndex, Span<float> sample, INoiseSource? noise)
    {
        double from = SigmaAt(stepIndex), to = SigmaAt(stepIndex + 1);
        double up = Math.Sqrt(to * to * (from * from - to * to) / (from * from));
        double down = Math.Sqrt(to * to - up * up);
        double dt = down - from;
        var fresh = DrawNoise(noise, sample.Length);
        var type = Config.PredictionType;
        for (int i = 0; i < sample.Length; i++)
        {
            double x = sample[i];
            double derivative = (x - X0(type, modelOutput[i], x, from)) / from;
            sample[i] = (float)(x + derivative * dt + fresh[i] * up);
        }
    }
}
