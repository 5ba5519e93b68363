using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class TimestepTests
{
    private static IReadOnlyList<double> Plan(IScheduler scheduler, int steps)
    {
        scheduler.SetTimesteps(steps);
        return scheduler.Timesteps;
    }

    [Fact]
    public void SdTurboOneTrailingStepIs999()
    {
        // trailing: round(1000 − 0·1000/1) − 1 = 999.
        Assert.Equal([999.0], Plan(new EulerDiscreteScheduler(Reference.SdTurbo), 1));
        Assert.Equal([999.0], Plan(new DdimScheduler(Reference.SdTurbo), 1));
        Assert.Equal([999.0], Plan(new DpmSolverMultistepScheduler(Reference.SdTurbo), 1));
    }

    [Fact]
    public void TrailingCountsDownFromTheTop()
    {
        // 1000/4 = 250: 1000, 750, 500, 250, each minus one.
        Assert.Equal([999.0, 749, 499, 249], Plan(new DdimScheduler(Reference.SdTurbo), 4));
        Assert.Equal([999.0, 749, 499, 249], Plan(new EulerDiscreteScheduler(Reference.SdTurbo), 4));
        // 1000/3: 1000, 666.67, 333.33 round to 1000, 667, 333.
        Assert.Equal([999.0, 666, 332], Plan(new DdimScheduler(Reference.SdTurbo), 3));
        // numpy's float arange gives 62 values for 61 steps (the last ≈ 0 → −1); we take exactly 61, all valid.
        var t61 = Plan(new EulerDiscreteScheduler(Reference.SdTurbo), 61);
        Assert.Equal(61, t61.Count);
        Assert.Equal(999, t61[0]);
        Assert.Equal(Math.Round(1000 - 60 * (1000.0 / 61)) - 1, t61[60]); // round(16.39) − 1 = 15
        Assert.Equal(15, t61[60]);
    }

    [Fact]
    public void DdimLeadingFiftyStepsWithOffsetOneIs981Down()
    {
        // leading: i·(1000 div 50) + 1 for i = 49..0 → 981, 961, ..., 21, 1.
        var expected = Enumerable.Range(0, 50).Select(i => 981.0 - 20 * i).ToArray();
        Assert.Equal(expected, Plan(new DdimScheduler(Reference.Sd15), 50));
        Assert.Equal(1, expected[^1]);
        // The same for Euler with the SD 1.5 config but leading spacing chosen explicitly.
        Assert.Equal(expected, Plan(new EulerDiscreteScheduler(Reference.Sd15 with { TimestepSpacing = TimestepSpacing.Leading }), 50));
    }

    [Fact]
    public void LinspaceSpacing()
    {
        // DDIM rounds linspace(0, 999, 10) = 111·i: 999, 888, ..., 111, 0.
        var ddim = new DdimScheduler(Reference.Sd15 with { TimestepSpacing = TimestepSpacing.Linspace });
        Assert.Equal(Enumerable.Range(0, 10).Select(i => 999.0 - 111 * i).ToArray(), Plan(ddim, 10));
        // Euler keeps the fractions: linspace(0, 999, 50) = 999·i/49 → 999, 978.612244..., ..., 0. SD 1.5's config has no
        // timestep_spacing key, so Euler uses its own default, linspace.
        var euler = Plan(new EulerDiscreteScheduler(Reference.Sd15), 50);
        Assert.Equal(999, euler[0]);
        Reference.Close(999.0 * 48 / 49, euler[1], 1e-15);
        Reference.Close(978.6122448979592, euler[1], 1e-15);
        Reference.Close(999.0 / 49, euler[48], 1e-14);
        Assert.Equal(0, euler[49]);
    }

    [Fact]
    public void DpmLinspaceTakesStepsPlusOnePointsAndRoundsHalfToEven()
    {
        // linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999 → rounded 0, 250, 500 (half to even), 749, 999; reversed, the 0 dropped.
        Assert.Equal([999.0, 749, 500, 250], Plan(new DpmSolverMultistepScheduler(Reference.Sd15), 4));
        // leading: 1000 div 5 = 200 → 800, 600, 400, 200, plus the offset 1.
        Assert.Equal([801.0, 601, 401, 201], Plan(new DpmSolverMultistepScheduler(Reference.Sd15 with { TimestepSpacing = TimestepSpacing.Leading }), 4));
    }

    [Fact]
    public void PndmRunsTheSecondTimestepTwice()
    {
        // SD 1.5, 50 steps: leading 981..1, run as 981, 961, 961, 941, ..., 1 (51 model calls).
        var t = Plan(new PndmScheduler(Reference.Sd15), 50);
        var expected = new List<double> { 981, 961 };
        expected.AddRange(Enumerable.Range(1, 49).Select(i => 981.0 - 20 * i));
        Assert.Equal(expected, t);
        Assert.Equal(51, t.Count);
        Assert.Equal([1.0], Plan(new PndmScheduler(Reference.Sd15), 1));
    }

    [Fact]
    public void LcmPicksFromTheDistillationSchedule()
    {
        // k = 1000 div 50 = 20; timesteps 999, 979, ..., 19; indices ⌊j·50/steps⌋.
        var lcm = new LcmScheduler(Reference.Sd15);
        Assert.Equal([999.0, 759, 499, 259], Plan(lcm, 4)); // indices 0, 12, 25, 37
        Assert.Equal([999.0, 879, 759, 639, 499, 379, 259, 139], Plan(lcm, 8)); // 0, 6, 12, 18, 25, 31, 37, 43
        Assert.Equal([999.0], Plan(lcm, 1));
        Assert.Equal(Enumerable.Range(0, 50).Select(j => 999.0 - 20 * j).ToArray(), Plan(lcm, 50));
        var e = Assert.Throws<InvalidArgumentException>(() => lcm.SetTimesteps(51));
        Assert.Equal("steps", e.Argument);
    }

    [Fact]
    public void StepCountIsChecked()
    {
        var ddim = new DdimScheduler(Reference.Sd15);
        Assert.Equal("steps", Assert.Throws<InvalidArgumentException>(() => ddim.SetTimesteps(0)).Argument);
        Assert.Contains("between 1 and num_train_timesteps (1000)", Assert.Throws<InvalidArgumentException>(() => ddim.SetTimesteps(1001)).Message);
        Assert.Throws<InvalidOperationException>(() => new EulerDiscreteScheduler(Reference.Sd15).Step(new float[1], 0, new float[1]));
    }

    [Theory]
    [InlineData(50, 1.0, 0)]
    [InlineData(50, 0.3, 35)]   // ⌊50·0.3⌋ = ⌊15.000000000000002⌋ = 15 → 50 − 15
    [InlineData(50, 0.75, 13)]  // ⌊37.5⌋ = 37 → 13
    [InlineData(4, 0.5, 2)]
    [InlineData(20, 0.0, 20)]   // nothing to denoise
    public void StartIndexForStrengthFollowsGetTimesteps(int steps, double strength, int expected)
    {
        var scheduler = new EulerDiscreteScheduler(Reference.Sd15);
        scheduler.SetTimesteps(steps);
        Assert.Equal(expected, scheduler.StartIndexForStrength(strength));
    }

    [Theory]
    [InlineData(1.5)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    public void StrengthOutsideZeroToOneIsAnArgumentError(double strength)
    {
        var scheduler = new DdimScheduler(Reference.Sd15);
        scheduler.SetTimesteps(10);
        Assert.Equal("strength", Assert.Throws<InvalidArgumentException>(() => scheduler.StartIndexForStrength(strength)).Argument);
    }
}
