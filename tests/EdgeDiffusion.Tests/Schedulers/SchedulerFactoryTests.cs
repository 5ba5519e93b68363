using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class SchedulerFactoryTests
{
    [Theory]
    [InlineData("euler", typeof(EulerDiscreteScheduler))]
    [InlineData("Euler-A", typeof(EulerAncestralDiscreteScheduler))]
    [InlineData("DDIM", typeof(DdimScheduler))]
    [InlineData("dpm++2m", typeof(DpmSolverMultistepScheduler))]
    [InlineData("DPM++2M-Karras", typeof(DpmSolverMultistepScheduler))]
    [InlineData(" lcm ", typeof(LcmScheduler))]
    [InlineData("pndm", typeof(PndmScheduler))]
    public void CreatesByCaseInsensitiveName(string name, Type type)
    {
        var scheduler = SchedulerFactory.Create(name, Reference.Sd15);
        Assert.IsType(type, scheduler);
        Assert.Equal(name.Trim().ToLowerInvariant(), scheduler.Name);
    }

    [Fact]
    public void KarrasIsPartOfTheDpmName()
    {
        var karras = Reference.Sd15 with { UseKarrasSigmas = true };
        Assert.False(SchedulerFactory.Create("dpm++2m", karras).Config.UseKarrasSigmas);
        Assert.True(SchedulerFactory.Create("dpm++2m-karras", Reference.Sd15).Config.UseKarrasSigmas);
        Assert.True(SchedulerFactory.Create("euler", karras).Config.UseKarrasSigmas); // euler honours the config
    }

    [Fact]
    public void UnknownNamesListTheAcceptedOnes()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => SchedulerFactory.Create("heun", Reference.Sd15));
        Assert.Equal("scheduler", e.Argument);
        Assert.Equal("scheduler: \"heun\" is not a scheduler; use one of euler, euler-a, ddim, dpm++2m, dpm++2m-karras, lcm, pndm", e.Message);
    }

    [Theory]
    [InlineData("EulerDiscreteScheduler", false, "euler")]
    [InlineData("EulerAncestralDiscreteScheduler", false, "euler-a")]
    [InlineData("DDIMScheduler", false, "ddim")]
    [InlineData("DPMSolverMultistepScheduler", false, "dpm++2m")]
    [InlineData("DPMSolverMultistepScheduler", true, "dpm++2m-karras")]
    [InlineData("LCMScheduler", false, "lcm")]
    [InlineData("PNDMScheduler", false, "pndm")]
    [InlineData("UniPCMultistepScheduler", false, null)]
    [InlineData(null, false, null)]
    public void MapsDiffusersClassNames(string? className, bool karras, string? expected)
    {
        var config = Reference.Sd15 with { ClassName = className, UseKarrasSigmas = karras };
        Assert.Equal(expected, SchedulerFactory.DefaultName(config));
        if (expected is null)
            Assert.Contains("choose one of euler,", Assert.Throws<InvalidArgumentException>(() => SchedulerFactory.CreateDefault(config)).Message);
        else
            Assert.Equal(expected, SchedulerFactory.CreateDefault(config).Name);
    }
}

public class SchedulerAllocationTests
{
    public static TheoryData<string> Names => [.. SchedulerFactory.Names];

    [Theory]
    [MemberData(nameof(Names))]
    public void StepsAfterTheFirstAllocateNothing(string name)
    {
        var scheduler = SchedulerFactory.Create(name, Reference.Sd15);
        scheduler.SetTimesteps(8);
        var sample = new float[4 * 64 * 64];
        var output = new float[sample.Length];
        var noise = new GaussianNoise(1);
        noise.Fill(sample);
        noise.Fill(output);
        scheduler.Step(output, 0, sample, noise);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 1; i < scheduler.Timesteps.Count; i++)
        {
            _ = scheduler.ScaleModelInputFactor(i);
            scheduler.Step(output, i, sample, noise);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.All(sample, v => Assert.True(float.IsFinite(v)));
    }
}
