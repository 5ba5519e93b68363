using System.Globalization;
using System.Text.Json;

namespace EdgeDiffusion.Serving;

/// <summary>
/// One generation request as the server's endpoints read it (OpenAI images or AUTOMATIC1111 txt2img shape), checked
/// against <see cref="ServerOptions"/> limits; unset values take the model's defaults. It becomes a
/// <see cref="Pipelines.GenerationRequest"/> through <see cref="Integration.EdgeDiffusionImageGenerator.ToGenerationRequest"/>.
/// </summary>
public sealed record ServeRequest
{
    public string? Model { get; init; }
    public required string Prompt { get; init; }
    public string? NegativePrompt { get; init; }
    public int? Steps { get; init; }
    public double? Guidance { get; init; }
    /// <summary>Null: a random seed.</summary>
    public ulong? Seed { get; init; }
    /// <summary>One of <see cref="Schedulers.SchedulerFactory.Names"/>, or null for the model's own.</summary>
    public string? Scheduler { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int Count { get; init; } = 1;

    /// <summary>AUTOMATIC1111 sampler names (and the project's own scheduler names) → <see cref="Schedulers.SchedulerFactory.Names"/>.</summary>
    public static IReadOnlyDictionary<string, string> Samplers { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["Euler"] = "euler", ["Euler a"] = "euler-a", ["DDIM"] = "ddim", ["DPM++ 2M"] = "dpm++2m", ["DPM++ 2M Karras"] = "dpm++2m-karras",
        ["LCM"] = "lcm", ["PLMS"] = "pndm", ["PNDM"] = "pndm",
        ["euler"] = "euler", ["euler-a"] = "euler-a", ["dpm++2m"] = "dpm++2m", ["dpm++2m-karras"] = "dpm++2m-karras",
    };

    /// <summary>
    /// POST /v1/images/generations: prompt (required), n, size ("WxH"), response_format ("b64_json" only), model; and
    /// EdgeDiffusion's extensions negative_prompt, steps, guidance, seed, scheduler.
    /// </summary>
    public static ServeRequest FromOpenAi(JsonElement body, ServerOptions limits)
    {
        var f = new Fields(body, limits);
        string format = f.String("response_format", 32) ?? "b64_json";
        if (format == "url")
            throw ApiException.BadRequest("response_format: \"url\" is not supported (this server hosts no files); use \"b64_json\"");
        if (format != "b64_json")
            throw ApiException.BadRequest($"response_format: \"{format}\" is not supported; use \"b64_json\"");
        int? width = null, height = null;
        if (f.String("size", 32) is { } size)
        {
            var parts = size.Split('x');
            if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int w)
                || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int h))
                throw ApiException.BadRequest($"size: \"{size}\" is not WIDTHxHEIGHT, e.g. \"64x64\"");
            width = f.CheckSize("size", w);
            height = f.CheckSize("size", h);
        }
        return new ServeRequest
        {
            Model = f.String("model", 200),
            Prompt = f.Prompt("prompt"),
            NegativePrompt = f.String("negative_prompt", limits.MaxPromptLength),
            Steps = f.Integer("steps", 1, limits.MaxSteps),
            Guidance = f.Number("guidance", 0, 100),
            Seed = f.Seed("seed"),
            Scheduler = f.Scheduler("scheduler"),
            Width = width,
            Height = height,
            Count = f.Integer("n", 1, limits.MaxImages) ?? 1,
        };
    }

    /// <summary>
    /// POST /sdapi/v1/txt2img: prompt, negative_prompt, steps, cfg_scale, width, height, seed (-1: random), sampler_name,
    /// batch_size; the model from "model" or override_settings.sd_model_checkpoint.
    /// </summary>
    public static ServeRequest FromA1111(JsonElement body, ServerOptions limits)
    {
        var f = new Fields(body, limits);
        string? model = f.String("model", 200);
        if (model is null && body.TryGetProperty("override_settings", out var overrides) && overrides.ValueKind == JsonValueKind.Object)
            model = new Fields(overrides, limits).String("sd_model_checkpoint", 200);
        long? seed = f.Long("seed");
        if (seed is < -1) throw ApiException.BadRequest($"seed: {seed} is out of range; use -1 (random) or 0 to 18446744073709551615");
        f.Integer("n_iter", 1, 1); // one iteration per request; batch_size gives more pictures
        return new ServeRequest
        {
            Model = model,
            Prompt = f.Prompt("prompt"),
            NegativePrompt = f.String("negative_prompt", limits.MaxPromptLength),
            Steps = f.Integer("steps", 1, limits.MaxSteps),
            Guidance = f.Number("cfg_scale", 0, 100),
            Seed = seed is null or -1 ? null : (ulong)seed.Value,
            Scheduler = f.Sampler("sampler_name") ?? f.Sampler("sampler_index"),
            Width = f.Integer("width", int.MinValue, int.MaxValue) is { } w ? f.CheckSize("width", w) : null,
            Height = f.Integer("height", int.MinValue, int.MaxValue) is { } h ? f.CheckSize("height", h) : null,
            Count = f.Integer("batch_size", 1, limits.MaxImages) ?? 1,
        };
    }

    /// <summary>Typed reads of a JSON object's properties; a wrong type or an out-of-range value is a 400 naming the property.</summary>
    private readonly struct Fields
    {
        private readonly JsonElement _body;
        private readonly ServerOptions _limits;

        public Fields(JsonElement body, ServerOptions limits)
        {
            if (body.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"the request body is a JSON {body.ValueKind.ToString().ToLowerInvariant()}; send a JSON object");
            _body = body;
            _limits = limits;
        }

        private JsonElement? Get(string name) =>
            _body.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public string? String(string name, int maxLength)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.String) throw ApiException.BadRequest($"{name}: expected a string, got {Kind(v)}");
            string s = v.GetString()!;
            if (s.Length > maxLength) throw ApiException.BadRequest($"{name}: {s.Length} characters is too long; at most {maxLength}");
            return s;
        }

        public string Prompt(string name)
        {
            string? prompt = String(name, _limits.MaxPromptLength);
            if (string.IsNullOrWhiteSpace(prompt)) throw ApiException.BadRequest($"{name}: missing or empty; give the text to draw");
            return prompt;
        }

        public long? Long(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
                throw ApiException.BadRequest($"{name}: expected an integer, got {Kind(v)}");
            return x;
        }

        public int? Integer(string name, int min, int max)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x))
                throw ApiException.BadRequest($"{name}: expected an integer, got {Kind(v)}");
            if (x < min || x > max) throw ApiException.BadRequest($"{name}: {x} is out of range; use {min} to {max}");
            return (int)x;
        }

        public double? Number(string name, double min, double max)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.Number) throw ApiException.BadRequest($"{name}: expected a number, got {Kind(v)}");
            double x = v.GetDouble();
            if (!double.IsFinite(x) || x < min || x > max) throw ApiException.BadRequest($"{name}: {x.ToString(CultureInfo.InvariantCulture)} is out of range; use {min} to {max}");
            return x;
        }

        public ulong? Seed(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetUInt64(out ulong x))
                throw ApiException.BadRequest($"{name}: expected an integer from 0 to 18446744073709551615, got {Kind(v)}");
            return x;
        }

        public string? Scheduler(string name)
        {
            string? s = String(name, 64);
            if (s is null) return null;
            return Samplers.TryGetValue(s.Trim(), out string? mapped) ? mapped
                : throw ApiException.BadRequest($"{name}: \"{s}\" is not a scheduler; use one of {string.Join(", ", Schedulers.SchedulerFactory.Names)}");
        }

        public string? Sampler(string name)
        {
            string? s = String(name, 64);
            if (s is null) return null;
            return Samplers.TryGetValue(s.Trim(), out string? mapped) ? mapped
                : throw ApiException.BadRequest($"{name}: \"{s}\" is not a known sampler; use one of {string.Join(", ", Samplers.Keys.Where(k => k.Any(char.IsUpper)))}");
        }

        public int CheckSize(string name, int size)
        {
            if (size <= 0 || size % 8 != 0 || size > _limits.MaxSize)
                throw ApiException.BadRequest($"{name}: {size} is not a positive multiple of 8 up to {_limits.MaxSize}");
            return size;
        }

        private static string Kind(JsonElement v) => v.ValueKind switch
        {
            JsonValueKind.String => $"the string {v.GetRawText()}",
            JsonValueKind.Number => $"the number {v.GetRawText()}",
            JsonValueKind.True or JsonValueKind.False => $"the boolean {v.GetRawText()}",
            JsonValueKind.Array => "an array",
            _ => "an object",
        };
    }
}
