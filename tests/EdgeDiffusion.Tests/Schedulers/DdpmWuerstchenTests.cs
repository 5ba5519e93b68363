using System.Text.Json;
using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

/// <summary>
/// Stable Cascade's scheduler against values computed independently in torch (float64) from the Würstchen / diffusers
/// definitions (training/fixtures/make_wuerstchen_fixture.py → Fixtures/wuerstchen-reference.json).
/// </summary>
public sealed class DdpmWuerstchenTests
{
    private static JsonElement Fixture { get; } = JsonDocument.Parse(File.ReadAllText(
        Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Schedulers", "Fixtures", "wuerstchen-reference.json"))).RootElement;

    [Fact]
    public void AlphaCumprodIsTheClampedCosineSchedule()
    {
        foreach (var row in Fixture.GetProperty("alpha_cumprod").EnumerateArray())
        {
            var scheduler = new DdpmWuerstchenScheduler(scaler: row.GetProperty("scaler").GetDouble());
            Reference.Close(row.GetProperty("value").GetDouble(), scheduler.AlphaCumprod(row.GetProperty("t").GetDouble()), 1e-12);
        }
    }

    [Fact]
    public void TrajectoryWithFixedOutputsAndNoiseMatchesTheReference()
    {
        foreach (var run in Fixture.GetProperty("trajectories").EnumerateArray())
        {
            int steps = run.GetProperty("steps").GetInt32();
            var scheduler = new DdpmWuerstchenScheduler();
            scheduler.SetTimesteps(steps);
            var expectedTimesteps = run.GetProperty("timesteps").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.Equal(expectedTimesteps.Length, scheduler.Timesteps.Count);
            for (int i = 0; i < steps; i++) Reference.Close(expectedTimesteps[i], scheduler.Timesteps[i], 1e-12);
            var x = Floats(run.GetProperty("start"));
            var outputs = run.GetProperty("model_outputs").EnumerateArray().Select(Floats).ToArray();
            var noise = run.GetProperty("noise").EnumerateArray().Select(Floats).ToArray();
            for (int i = 0; i < steps; i++) scheduler.Step(outputs[i], i, x, new ReplayNoise(noise[i]));
            var end = Floats(run.GetProperty("end"));
            for (int k = 0; k < end.Length; k++) Reference.Close(end[k], x[k], 1e-5);
        }
    }

    [Fact]
    public void LastStepAddsNoNoiseAndBadArgumentsAreTyped()
    {
        var scheduler = new DdpmWuerstchenScheduler();
        scheduler.SetTimesteps(1);
        float[] x = [0.5f], eps = [0.25f];
        scheduler.Step(eps, 0, x); // no noise source needed: t' = 0
        double a = scheduler.AlphaCumprod(1.0), alpha = a / scheduler.AlphaCumprod(0.0);
        Reference.Close((0.5 - (1 - alpha) * 0.25 / Math.Sqrt(1 - a)) / Math.Sqrt(alpha), x[0], 1e-6);
        scheduler.SetTimesteps(3);
        Assert.Throws<ArgumentNullException>(() => scheduler.Step(eps, 0, x));
        Assert.Throws<InvalidArgumentException>(() => new DdpmWuerstchenScheduler(s: 0));
        Assert.Throws<InvalidArgumentException>(() => scheduler.SetTimesteps(0));
    }

    [Fact]
    public void ConfigFileIsReadAndOtherClassesAreRefused()
    {
        string dir = TestData.NewTempDir();
        string file = Path.Combine(dir, "scheduler_config.json");
        File.WriteAllText(file, """{"_class_name": "DDPMWuerstchenScheduler", "s": 0.01, "scaler": 2.0}""");
        var scheduler = DdpmWuerstchenScheduler.FromFile(file);
        Assert.Equal(0.01, scheduler.S);
        Assert.Equal(2.0, scheduler.Scaler);
        File.WriteAllText(file, """{"_class_name": "EulerDiscreteScheduler"}""");
        var e = Assert.Throws<SchedulerConfigException>(() => DdpmWuerstchenScheduler.FromFile(file));
        Assert.Contains(file, e.Message);
        Directory.Delete(dir, true);
    }

    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    private sealed class ReplayNoise(float[] values) : INoiseSource
    {
        public void Fill(Span<float> destination) => values.AsSpan(0, destination.Length).CopyTo(destination);
    }
}
