using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Tests.Schedulers;

public class SchedulerConfigTests
{
    // Stable Diffusion 1.5's scheduler/scheduler_config.json as shipped (diffusers 0.6 era, no timestep_spacing key).
    private const string Sd15Json = """
        {
          "_class_name": "PNDMScheduler",
          "_diffusers_version": "0.6.0",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "num_train_timesteps": 1000,
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "trained_betas": null,
          "clip_sample": false
        }
        """;

    private const string SdTurboJson = """
        {
          "_class_name": "EulerDiscreteScheduler",
          "_diffusers_version": "0.24.0.dev0",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "clip_sample": false,
          "interpolation_type": "linear",
          "num_train_timesteps": 1000,
          "prediction_type": "epsilon",
          "sample_max_value": 1.0,
          "set_alpha_to_one": false,
          "skip_prk_steps": true,
          "steps_offset": 1,
          "timestep_spacing": "trailing",
          "timestep_type": "discrete",
          "trained_betas": null,
          "use_karras_sigmas": false
        }
        """;

    [Fact]
    public void ParsesStableDiffusion15()
    {
        var c = SchedulerConfig.Parse(Sd15Json);
        Assert.Equal("PNDMScheduler", c.ClassName);
        Assert.Equal(1000, c.NumTrainTimesteps);
        Assert.Equal(0.00085, c.BetaStart);
        Assert.Equal(0.012, c.BetaEnd);
        Assert.Equal(BetaSchedule.ScaledLinear, c.BetaSchedule);
        Assert.Equal(1, c.StepsOffset);
        Assert.False(c.SetAlphaToOne);
        Assert.False(c.ClipSample);
        Assert.Null(c.TrainedBetas);
        Assert.Null(c.TimestepSpacing); // absent: each scheduler applies its own diffusers default
        Assert.Equal(PredictionType.Epsilon, c.PredictionType);
    }

    [Fact]
    public void ParsesSdTurboAndTheOtherEnumKeys()
    {
        var c = SchedulerConfig.Parse(SdTurboJson);
        Assert.Equal(TimestepSpacing.Trailing, c.TimestepSpacing);
        Assert.Equal(TimestepType.Discrete, c.TimestepType);
        Assert.False(c.UseKarrasSigmas);

        var v = SchedulerConfig.Parse("""{"prediction_type": "v_prediction", "use_karras_sigmas": true, "final_sigmas_type": "sigma_min", "original_inference_steps": 4, "timestep_scaling": 5.5, "clip_sample_range": 2}""");
        Assert.Equal(PredictionType.VPrediction, v.PredictionType);
        Assert.True(v.UseKarrasSigmas);
        Assert.Equal(FinalSigmasType.SigmaMin, v.FinalSigmasType);
        Assert.Equal(4, v.OriginalInferenceSteps);
        Assert.Equal(5.5, v.TimestepScaling);
        Assert.Equal(2.0, v.ClipSampleRange);
        Assert.Equal(PredictionType.Sample, SchedulerConfig.Parse("""{"prediction_type": "original_sample"}""").PredictionType);
    }

    [Fact]
    public void UnknownKeysAreIgnoredAndAbsentKeysKeepStableDiffusionDefaults()
    {
        var c = SchedulerConfig.Parse("""{"solver_order": 3, "some_future_key": {"nested": [1, 2]}, "algorithm_type": "dpmsolver++"}""");
        Assert.Equal(new SchedulerConfig(), c);
        Assert.Equal(0.00085, c.BetaStart);
        Assert.Equal(BetaSchedule.ScaledLinear, c.BetaSchedule);
    }

    [Theory]
    [InlineData("""{"beta_schedule": "cosine"}""", "beta_schedule", "expected one of linear, scaled_linear, squaredcos_cap_v2")]
    [InlineData("""{"num_train_timesteps": "1000"}""", "num_train_timesteps", "expected a whole number")]
    [InlineData("""{"num_train_timesteps": 0}""", "num_train_timesteps", "at least 1")]
    [InlineData("""{"beta_end": 1.5}""", "beta_end", "[0, 1)")]
    [InlineData("""{"steps_offset": -1}""", "steps_offset", "[0, num_train_timesteps)")]
    [InlineData("""{"set_alpha_to_one": "no"}""", "set_alpha_to_one", "expected true or false")]
    [InlineData("""{"timestep_spacing": "even"}""", "timestep_spacing", "linspace, leading, trailing")]
    [InlineData("""{"num_train_timesteps": 4, "trained_betas": [0.1, 0.2]}""", "trained_betas", "has 2 values")]
    [InlineData("""{"thresholding": true}""", "thresholding", "do not implement")]
    [InlineData("""{"interpolation_type": "log_linear"}""", "interpolation_type", "do not implement")]
    public void BadValuesNameTheFileAndKey(string json, string key, string problem)
    {
        var e = Assert.Throws<SchedulerConfigException>(() => SchedulerConfig.Parse(json, "sd/scheduler/scheduler_config.json"));
        Assert.Equal("sd/scheduler/scheduler_config.json", e.File);
        Assert.Equal(key, e.Key);
        Assert.Contains(problem, e.Message);
        Assert.StartsWith($"sd/scheduler/scheduler_config.json: \"{key}\" ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.IsAssignableFrom<EdgeDiffusionException>(e);
    }

    [Fact]
    public void NotJsonOrNotAnObjectIsAFileError()
    {
        var e = Assert.Throws<SchedulerConfigException>(() => SchedulerConfig.Parse("{ nope", "x.json"));
        Assert.Null(e.Key);
        Assert.StartsWith("x.json: is not valid JSON", e.Message);
        Assert.Contains("must hold a JSON object", Assert.Throws<SchedulerConfigException>(() => SchedulerConfig.Parse("[1]", "x.json")).Message);
    }

    [Fact]
    public void FromFileReadsAndReportsMissingFiles()
    {
        string dir = TestData.NewTempDir();
        try
        {
            string path = Path.Combine(dir, "scheduler_config.json");
            File.WriteAllText(path, SdTurboJson);
            Assert.Equal(SchedulerConfig.Parse(SdTurboJson), SchedulerConfig.FromFile(path));

            string missing = Path.Combine(dir, "nope.json");
            var e = Assert.Throws<SchedulerConfigException>(() => SchedulerConfig.FromFile(missing));
            Assert.StartsWith($"{missing}: file not found", e.Message);

            File.WriteAllText(path, """{"prediction_type": "x0"}""");
            e = Assert.Throws<SchedulerConfigException>(() => SchedulerConfig.FromFile(path));
            Assert.StartsWith($"{path}: \"prediction_type\" is \"x0\"; expected one of epsilon, v_prediction, sample", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void CodeBuiltConfigsAreValidatedWhenASchedulerIsMade()
    {
        var e = Assert.Throws<SchedulerConfigException>(() => new DdimScheduler(new SchedulerConfig { BetaStart = -0.1 }));
        Assert.Equal(SchedulerConfig.InCode, e.File);
        Assert.Equal("beta_start", e.Key);
    }
}
