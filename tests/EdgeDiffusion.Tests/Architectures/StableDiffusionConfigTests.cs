using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

public class StableDiffusionConfigTests
{
    [Fact]
    public void Sd21_IsDdimWithVPrediction()
    {
        var json = StableDiffusionArchitecture.SchedulerConfig(StableDiffusionConfig.Sd21.Scheduler);
        Assert.Equal("DDIMScheduler", (string?)json["_class_name"]);
        Assert.Equal("v_prediction", (string?)json["prediction_type"]);
        Assert.Equal(1, (int?)json["steps_offset"]);
        Assert.Equal("!", StableDiffusionConfig.Sd21.PadToken);
        Assert.Equal(96, StableDiffusionConfig.Sd21.LatentSize);
    }

    [Fact]
    public void SdTurbo_IsEulerWithTrailingSpacing_At512()
    {
        var json = StableDiffusionArchitecture.SchedulerConfig(StableDiffusionConfig.SdTurbo.Scheduler);
        Assert.Equal("EulerDiscreteScheduler", (string?)json["_class_name"]);
        Assert.Equal("trailing", (string?)json["timestep_spacing"]);
        Assert.Equal("epsilon", (string?)json["prediction_type"]);
        Assert.Equal(512, StableDiffusionConfig.SdTurbo.ImageSize);
        Assert.Same(UNetConfig.Sd21, StableDiffusionConfig.SdTurbo.UNet);
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("SD15")]
    [InlineData("sd21")]
    [InlineData("sd-turbo")]
    public void Presets_AreFoundByName(string name)
    {
        Assert.Equal(name, StableDiffusionConfig.Preset(name).Name, ignoreCase: true);
    }

    [Fact]
    public void UnknownPreset_ListsTheKnownOnes()
    {
        var e = Assert.Throws<InvalidArgumentException>(() => StableDiffusionConfig.Preset("sdxl"));
        Assert.Contains("sd-turbo", e.Message);
    }

    [Fact]
    public void MismatchedTextWidth_IsRejected()
    {
        var config = StableDiffusionConfig.Tiny with { TextEncoder = StableDiffusionConfig.Tiny.TextEncoder with { Width = 64, Heads = 2 } };
        Assert.Throws<InvalidArgumentException>(() => StableDiffusionArchitecture.ParameterCounts(config));
    }

    [Fact]
    public void TinyTotal_IsAFewMillionParameters()
    {
        long total = StableDiffusionArchitecture.ParameterCounts(StableDiffusionConfig.Tiny).Values.Sum();
        Assert.InRange(total, 100_000, 4_000_000);
    }
}
