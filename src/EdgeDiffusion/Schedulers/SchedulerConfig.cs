using System.Globalization;
using System.Text.Json;

namespace EdgeDiffusion.Schedulers;

/// <summary>How the training betas β_0..β_{N-1} are laid out (diffusers' <c>beta_schedule</c>).</summary>
public enum BetaSchedule
{
    /// <summary><c>linear</c>: β_i evenly spaced from beta_start to beta_end.</summary>
    Linear,
    /// <summary><c>scaled_linear</c>: √β_i evenly spaced from √beta_start to √beta_end (Stable Diffusion).</summary>
    ScaledLinear,
    /// <summary><c>squaredcos_cap_v2</c>: the cosine schedule of Nichol &amp; Dhariwal, each β capped at 0.999.</summary>
    SquaredCosCapV2,
}

/// <summary>What the denoising model predicts (diffusers' <c>prediction_type</c>).</summary>
public enum PredictionType
{
    /// <summary><c>epsilon</c>: the noise ε in x_t = √ᾱ x_0 + √(1-ᾱ) ε (SD 1.x, SD 2 base, SDXL, SD-Turbo).</summary>
    Epsilon,
    /// <summary><c>v_prediction</c>: v = √ᾱ ε − √(1-ᾱ) x_0 (SD 2.x 768).</summary>
    VPrediction,
    /// <summary><c>sample</c> (or the older <c>original_sample</c>): the clean sample x_0 itself.</summary>
    Sample,
}

/// <summary>How inference timesteps are picked from the training ones (Table 2 of arXiv:2305.08891; diffusers' <c>timestep_spacing</c>).</summary>
public enum TimestepSpacing
{
    /// <summary><c>linspace</c>: evenly from N-1 down to 0.</summary>
    Linspace,
    /// <summary><c>leading</c>: multiples of N/steps counted up from 0, plus steps_offset.</summary>
    Leading,
    /// <summary><c>trailing</c>: multiples of N/steps counted down from N, minus one (always starts at N-1).</summary>
    Trailing,
}

/// <summary>diffusers' <c>timestep_type</c> (Euler): continuous timesteps 0.25·ln σ are fed to v-prediction models trained that way.</summary>
public enum TimestepType { Discrete, Continuous }

/// <summary>diffusers' <c>final_sigmas_type</c>: the σ after the last step, 0 (a clean sample) or the smallest training σ.</summary>
public enum FinalSigmasType { Zero, SigmaMin }

/// <summary>
/// Scheduler settings, as diffusers' <c>scheduler/scheduler_config.json</c> spells them. Immutable: derive variants with <c>with</c>.
/// Keys absent from a file keep the defaults below, which are Stable Diffusion's (every SD config spells its betas out;
/// diffusers' own class defaults, 0.0001..0.02 linear, fit no SD model). Settings whose diffusers default differs between
/// scheduler classes are nullable here: null means "the default of whichever scheduler uses this config", exactly as
/// diffusers' <c>from_config</c> does when one model's config is handed to another scheduler class.
/// </summary>
public sealed record SchedulerConfig
{
    /// <summary>Where the keys of a code-built config are said to come from in error messages.</summary>
    public const string InCode = "SchedulerConfig";

    /// <summary><c>_class_name</c>: the diffusers scheduler the model was shipped with (picks the default scheduler).</summary>
    public string? ClassName { get; init; }

    /// <summary>
    /// Whether this config was written for one of <paramref name="classNames"/> (or built in code, without a
    /// <c>_class_name</c>). A config borrowed from another class never chose the settings that class lacks: an Euler or
    /// DPM config has no <c>clip_sample</c> because those samplers end at σ = 0 on latents of any range, so DDIM and PNDM
    /// take the latent-diffusion values for such keys (no clipping, a clean last step) instead of their pixel-space
    /// defaults. diffusers' <c>from_config</c> applies the class defaults instead, and DDIM then clamps Stable Diffusion
    /// latents to ±1 (pictures of noise on tiny-shapes, whose config comes from EulerDiscreteScheduler).
    /// </summary>
    public bool WrittenFor(params string[] classNames) => ClassName is null || classNames.Contains(ClassName, StringComparer.Ordinal);

    /// <summary><c>num_train_timesteps</c>: N, the length of the training noise schedule.</summary>
    public int NumTrainTimesteps { get; init; } = 1000;

    /// <summary><c>beta_start</c>.</summary>
    public double BetaStart { get; init; } = 0.00085;

    /// <summary><c>beta_end</c>.</summary>
    public double BetaEnd { get; init; } = 0.012;

    /// <summary><c>beta_schedule</c>.</summary>
    public BetaSchedule BetaSchedule { get; init; } = BetaSchedule.ScaledLinear;

    /// <summary><c>trained_betas</c>: explicit betas that replace the schedule when present (N values).</summary>
    public IReadOnlyList<double>? TrainedBetas { get; init; }

    /// <summary><c>prediction_type</c>.</summary>
    public PredictionType PredictionType { get; init; } = PredictionType.Epsilon;

    /// <summary><c>timestep_spacing</c>; null: linspace for Euler, Euler a and DPM++ 2M, leading for DDIM, PNDM and LCM (diffusers' defaults).</summary>
    public TimestepSpacing? TimestepSpacing { get; init; }

    /// <summary><c>steps_offset</c>: added to every timestep under leading spacing (SD uses 1).</summary>
    public int StepsOffset { get; init; }

    /// <summary>
    /// <c>set_alpha_to_one</c>: ᾱ used past the last step, 1 or ᾱ_0; null: true for DDIM and LCM; false for PNDM when the
    /// config was written for PNDM (diffusers' default), true when it was borrowed from another class (see <see cref="WrittenFor"/>).
    /// </summary>
    public bool? SetAlphaToOne { get; init; }

    /// <summary>
    /// <c>clip_sample</c>: clamp the predicted x_0 to ±clip_sample_range; null: true for DDIM when the config was written for
    /// DDIM or DDPM (diffusers' pixel-space default), false when borrowed from another class and for LCM.
    /// </summary>
    public bool? ClipSample { get; init; }

    /// <summary><c>clip_sample_range</c>.</summary>
    public double ClipSampleRange { get; init; } = 1.0;

    /// <summary><c>use_karras_sigmas</c>: Euler and DPM++ 2M space their σ by Karras et al.'s ρ=7 rule.</summary>
    public bool UseKarrasSigmas { get; init; }

    /// <summary><c>timestep_type</c> (Euler).</summary>
    public TimestepType TimestepType { get; init; } = TimestepType.Discrete;

    /// <summary><c>final_sigmas_type</c> (Euler, DPM++ 2M).</summary>
    public FinalSigmasType FinalSigmasType { get; init; } = FinalSigmasType.Zero;

    /// <summary><c>lower_order_final</c> (DPM++ 2M): take a first-order last step when there are fewer than 15 steps.</summary>
    public bool LowerOrderFinal { get; init; } = true;

    /// <summary><c>euler_at_final</c> (DPM++ 2M): always take a first-order last step.</summary>
    public bool EulerAtFinal { get; init; }

    /// <summary><c>original_inference_steps</c> (LCM): the step count of the distillation schedule timesteps are drawn from.</summary>
    public int OriginalInferenceSteps { get; init; } = 50;

    /// <summary><c>timestep_scaling</c> (LCM): t is multiplied by this in the boundary-condition scalings c_skip, c_out.</summary>
    public double TimestepScaling { get; init; } = 10.0;

    /// <summary>Reads a scheduler_config.json file. Unknown keys are ignored; bad values throw <see cref="SchedulerConfigException"/> naming the file and key.</summary>
    public static SchedulerConfig FromFile(string path)
    {
        if (Directory.Exists(path))
            throw new SchedulerConfigException(path, null, "is a folder; pass the scheduler_config.json inside the model's scheduler/ folder");
        if (!File.Exists(path))
            throw new SchedulerConfigException(path, null, "file not found; a diffusers model keeps it at scheduler/scheduler_config.json");
        string json;
        try { json = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SchedulerConfigException(path, null, $"cannot be read: {e.Message}", e);
        }
        return Parse(json, path);
    }

    /// <summary>Parses scheduler_config.json text; <paramref name="file"/> names it in error messages.</summary>
    public static SchedulerConfig Parse(string json, string file = "scheduler_config.json")
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e)
        {
            throw new SchedulerConfigException(file, null, $"is not valid JSON ({e.Message}); re-download the model's scheduler/scheduler_config.json", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SchedulerConfigException(file, null, "must hold a JSON object of scheduler settings");
            var config = new SchedulerConfig();
            var reader = new Reader(file);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.Null) continue; // diffusers writes unset options as null
                config = reader.Apply(config, p.Name, p.Value);
            }
            config.Validate(file);
            return config;
        }
    }

    /// <summary>Checks the ranges of every value; <paramref name="file"/> names the source in the error.</summary>
    public void Validate(string file = InCode)
    {
        void Fail(string key, string problem) => throw new SchedulerConfigException(file, key, problem);
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

        if (NumTrainTimesteps < 1) Fail("num_train_timesteps", $"is {NumTrainTimesteps}; it must be at least 1 (Stable Diffusion uses 1000)");
        if (TrainedBetas is null)
        {
            if (!(BetaStart >= 0 && BetaStart < 1)) Fail("beta_start", $"is {F(BetaStart)}; it must be in [0, 1) (Stable Diffusion uses 0.00085)");
            if (!(BetaEnd >= 0 && BetaEnd < 1)) Fail("beta_end", $"is {F(BetaEnd)}; it must be in [0, 1) (Stable Diffusion uses 0.012)");
        }
        else
        {
            if (TrainedBetas.Count != NumTrainTimesteps)
                Fail("trained_betas", $"has {TrainedBetas.Count} values; it needs one per training timestep ({NumTrainTimesteps})");
            for (int i = 0; i < TrainedBetas.Count; i++)
                if (!(TrainedBetas[i] >= 0 && TrainedBetas[i] < 1)) Fail("trained_betas", $"value {i} is {F(TrainedBetas[i])}; every beta must be in [0, 1)");
        }
        if (StepsOffset < 0 || StepsOffset >= NumTrainTimesteps)
            Fail("steps_offset", $"is {StepsOffset}; it must be in [0, num_train_timesteps) (Stable Diffusion uses 1)");
        if (!(ClipSampleRange > 0 && double.IsFinite(ClipSampleRange))) Fail("clip_sample_range", $"is {F(ClipSampleRange)}; it must be a positive number");
        if (OriginalInferenceSteps < 1) Fail("original_inference_steps", $"is {OriginalInferenceSteps}; it must be at least 1 (LCM uses 50)");
        if (!(TimestepScaling > 0 && double.IsFinite(TimestepScaling))) Fail("timestep_scaling", $"is {F(TimestepScaling)}; it must be a positive number (LCM uses 10)");
    }

    /// <summary>Maps one JSON key onto the config; the typed getters turn wrong types into errors naming file and key.</summary>
    private sealed class Reader(string file)
    {
        public SchedulerConfig Apply(SchedulerConfig c, string key, JsonElement v) => key switch
        {
            "_class_name" => c with { ClassName = String(key, v) },
            "num_train_timesteps" => c with { NumTrainTimesteps = Int(key, v) },
            "beta_start" => c with { BetaStart = Number(key, v) },
            "beta_end" => c with { BetaEnd = Number(key, v) },
            "beta_schedule" => c with { BetaSchedule = Choice(key, v, ("linear", BetaSchedule.Linear), ("scaled_linear", BetaSchedule.ScaledLinear), ("squaredcos_cap_v2", BetaSchedule.SquaredCosCapV2)) },
            "trained_betas" => c with { TrainedBetas = Numbers(key, v) },
            "prediction_type" => c with { PredictionType = Choice(key, v, ("epsilon", PredictionType.Epsilon), ("v_prediction", PredictionType.VPrediction), ("sample", PredictionType.Sample), ("original_sample", PredictionType.Sample)) },
            "timestep_spacing" => c with { TimestepSpacing = Choice(key, v, ("linspace", Schedulers.TimestepSpacing.Linspace), ("leading", Schedulers.TimestepSpacing.Leading), ("trailing", Schedulers.TimestepSpacing.Trailing)) },
            "steps_offset" => c with { StepsOffset = Int(key, v) },
            "set_alpha_to_one" => c with { SetAlphaToOne = Bool(key, v) },
            "clip_sample" => c with { ClipSample = Bool(key, v) },
            "clip_sample_range" => c with { ClipSampleRange = Number(key, v) },
            "use_karras_sigmas" => c with { UseKarrasSigmas = Bool(key, v) },
            "timestep_type" => c with { TimestepType = Choice(key, v, ("discrete", TimestepType.Discrete), ("continuous", TimestepType.Continuous)) },
            "final_sigmas_type" => c with { FinalSigmasType = Choice(key, v, ("zero", FinalSigmasType.Zero), ("sigma_min", FinalSigmasType.SigmaMin)) },
            "lower_order_final" => c with { LowerOrderFinal = Bool(key, v) },
            "euler_at_final" => c with { EulerAtFinal = Bool(key, v) },
            "original_inference_steps" => c with { OriginalInferenceSteps = Int(key, v) },
            "timestep_scaling" => c with { TimestepScaling = Number(key, v) },
            "interpolation_type" => Unsupported(c, key, Choice(key, v, ("linear", false), ("log_linear", true)), "\"log_linear\""),
            // Options that would change the schedule in ways these schedulers do not implement: refuse rather than run them wrongly.
            "thresholding" or "rescale_betas_zero_snr" or "use_exponential_sigmas" or "use_beta_sigmas" or "use_lu_lambdas"
                => Unsupported(c, key, Bool(key, v), "true"),
            _ => c, // keys of other schedulers (skip_prk_steps, solver_order, ...) and _diffusers_version
        };

        private SchedulerConfig Unsupported(SchedulerConfig c, string key, bool set, string value) => set
            ? throw new SchedulerConfigException(file, key, $"is {value}, which EdgeDiffusion's schedulers do not implement; set it to its default or remove the key")
            : c;

        private string Raw(JsonElement v) => v.GetRawText() is { Length: > 40 } s ? s[..40] + "..." : v.GetRawText();

        private string String(string key, JsonElement v) => v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected a string");

        private int Int(string key, JsonElement v) => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)
            ? i
            : throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected a whole number");

        private double Number(string key, JsonElement v) => v.ValueKind == JsonValueKind.Number
            ? v.GetDouble()
            : throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected a number");

        private bool Bool(string key, JsonElement v) => v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected true or false"),
        };

        private double[] Numbers(string key, JsonElement v)
        {
            if (v.ValueKind != JsonValueKind.Array) throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected an array of numbers or null");
            var result = new double[v.GetArrayLength()];
            int i = 0;
            foreach (var item in v.EnumerateArray()) result[i++] = Number(key, item);
            return result;
        }

        private T Choice<T>(string key, JsonElement v, params (string Name, T Value)[] choices)
        {
            string? s = v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            foreach (var (name, value) in choices)
                if (s == name) return value;
            string accepted = string.Join(", ", choices.Select(c => c.Name));
            throw new SchedulerConfigException(file, key, $"is {Raw(v)}; expected one of {accepted}");
        }
    }
}
