using System.CommandLine;
using System.Globalization;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Schedulers;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff generate: a prompt in, PNG files out (txt2img, or img2img with --init-image).</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "what to draw" };
        var model = ModelOption.Create();
        var negative = new Option<string>("--negative-prompt", "-n") { Description = "what to steer away from", DefaultValueFactory = _ => "" };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 20 };
        var guidance = new Option<double?>("--guidance", "-g") { Description = "classifier-free guidance scale (≤ 1 turns it off; default: the model's recommended scale from model_index.json, else 7.5)" };
        var scheduler = new Option<string?>("--scheduler") { Description = $"one of {string.Join(", ", SchedulerFactory.Names)}; default: the model's own" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the initial noise (image i of --count uses seed + i)", DefaultValueFactory = _ => 42 };
        var width = new Option<int?>("--width", "-W") { Description = "width in pixels, a multiple of 8 (default: the model's size, else 512)" };
        var height = new Option<int?>("--height", "-H") { Description = "height in pixels, a multiple of 8 (default: the model's size, else 512)" };
        var count = new Option<int>("--count") { Description = "number of images", DefaultValueFactory = _ => 1 };
        var init = new Option<string?>("--init-image") { Description = "img2img: the picture to start from (PNG, JPEG, …)" };
        var strength = new Option<double>("--strength") { Description = "img2img: how much to change the init image, in (0, 1]", DefaultValueFactory = _ => 0.75 };
        var output = new Option<string>("--output", "-o") { Description = "PNG file to write (with --count > 1: NAME-0.png, NAME-1.png, …)", DefaultValueFactory = _ => "edgediff.png" };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per operator (0: one per core)", DefaultValueFactory = _ => 0 };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no progress output" };
        var cacheDir = new Option<string?>("--cache-dir") { Description = $"where optimized sessions and prepacked weights are kept between runs (default: {SessionCache.DefaultDirectory})" };
        var noCache = new Option<bool>("--no-cache") { Description = "build every session from scratch and cache nothing" };
        var sharedAllocator = new Option<bool>("--shared-allocator") { Description = "all sessions allocate from one shared CPU arena (session.use_env_allocators)" };
        var lowMemory = new Option<bool>("--low-memory") { Description = "keep only the UNet loaded; create the text encoder and VAE for each use (same output, less memory)" };
        var rng = new Option<string>("--rng")
        {
            Description = "the initial noise: edgediff (the same on every platform), torch (torch.randn on the CPU with torch.Generator().manual_seed(seed), as diffusers draws its latents) or numpy (np.random.RandomState(seed), seeds up to 4294967295)",
            HelpName = string.Join("|", NoiseSources.Names),
            DefaultValueFactory = _ => NoiseSources.Default,
        };
        var decompress = RuntimeOptions.DecompressOption();
        var lora = new Option<string[]>("--lora") { Description = "a LoRA .safetensors file (kohya or diffusers/PEFT) merged into the UNet and text encoder at load, FILE or FILE:SCALE; repeat for several", AllowMultipleArgumentsPerToken = false };
        var loraPartial = new Option<bool>("--lora-partial") { Description = "apply a LoRA even when some of its tensors match no weight of the model (they are reported)" };
        var controlImage = new Option<string[]>("--control-image") { Description = "ControlNet: the conditioning image (for tiny-shapes: a mask, white where the shape goes), resized to the output size; repeat for several ControlNets", AllowMultipleArgumentsPerToken = false };
        var controlModel = new Option<string[]>("--control-model") { Description = "ControlNet: a folder with controlnet/model.onnx (and the UNet taking its residuals, unet/model.onnx), one per --control-image (default: MODEL/controlnet, else the folder MODEL-controlnet beside the model)", AllowMultipleArgumentsPerToken = false };
        var controlScale = new Option<double[]>("--control-scale") { Description = "ControlNet: conditioning scale (default 1), one for all or one per --control-image", AllowMultipleArgumentsPerToken = false };
        var controlStart = new Option<double[]>("--control-start") { Description = "ControlNet: fraction of the steps where it starts acting (diffusers' control_guidance_start, default 0), one for all or one per --control-image", AllowMultipleArgumentsPerToken = false };
        var controlEnd = new Option<double[]>("--control-end") { Description = "ControlNet: fraction of the steps where it stops (control_guidance_end, default 1), one for all or one per --control-image", AllowMultipleArgumentsPerToken = false };
        var priorSteps = new Option<int?>("--prior-steps") { Description = "Stable Cascade: prior (Stage C) steps (default: the folder's, else 20)" };
        var decoderSteps = new Option<int?>("--decoder-steps") { Description = "Stable Cascade: decoder (Stage B) steps (default: the folder's, else 10)" };
        var priorGuidance = new Option<double?>("--prior-guidance") { Description = "Stable Cascade: the prior's guidance scale (default: the folder's, else 4)" };
        var decoderGuidance = new Option<double?>("--decoder-guidance") { Description = "Stable Cascade: the decoder's guidance scale (default: the folder's, else 0: off)" };
        var command = new Command("generate",
            "Generate images from a text prompt with a Stable Diffusion-style ONNX model folder. Without --model it uses the default model, " +
            "models/tiny-shapes (shipped beside edgediff): 64×64 pictures of one shape on a background, at its own guidance 3; " +
            "it knows the colours red, green, blue, yellow, orange, purple, white and black, the shapes circle, square and triangle (or two small ones: \"two red circles\"), the sizes small and large, and positions (in the center, at the top left, …: not followed yet), e.g. \"a large red circle on a blue background\".")
        {
            prompt, model, negative, steps, guidance, scheduler, seed, width, height, count, init, strength, output, threads, quiet, cacheDir, noCache, lowMemory, sharedAllocator, decompress, rng,
            priorSteps, decoderSteps, priorGuidance, decoderGuidance, lora, loraPartial, controlImage, controlModel, controlScale, controlStart, controlEnd,
        };
        var devices = RuntimeOptions.AddDeviceOptions(command);
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            // Everything that can be wrong with the command line is checked here, before any file is read or session made.
            var outputs = OutputPaths(result.GetValue(output)!, result.GetValue(count));
            string folder = ModelOption.Resolve(result.GetValue(model));
            var settings = RuntimeOptions.Settings(result.GetValue(threads), result.GetValue(noCache), result.GetValue(cacheDir), result.GetValue(sharedAllocator),
                result.GetValue(decompress), devices.Resolve(result, Console.Error));
            if (CascadeFolder.IsCascade(folder))
            {
                // SD-only options on a Cascade folder are mistakes, not silently ignored.
                foreach (var (option, name, hint) in new (Option, string, string)[]
                {
                    (steps, "--steps", "use --prior-steps and --decoder-steps"), (guidance, "--guidance", "use --prior-guidance and --decoder-guidance"),
                    (scheduler, "--scheduler", "both stages use ddpm-wuerstchen"), (init, "--init-image", "img2img is not available for Stable Cascade yet"),
                    (strength, "--strength", "img2img is not available for Stable Cascade yet"), (lowMemory, "--low-memory", "it applies to SD folders"), (lora, "--lora", "LoRAs are supported on Stable Diffusion folders"),
                    (controlImage, "--control-image", "ControlNet is supported on Stable Diffusion folders"), (controlModel, "--control-model", "ControlNet is supported on Stable Diffusion folders"),
                })
                    if (result.GetResult(option) is { Implicit: false })
                        throw new InvalidArgumentException(name, $"does not apply to the Stable Cascade folder {folder}; {hint}");
                var cascadeRequest = new CascadeRequest
                {
                    Prompt = result.GetValue(prompt)!, NegativePrompt = result.GetValue(negative) ?? "", Seed = result.GetValue(seed), Count = result.GetValue(count),
                    Width = result.GetValue(width), Height = result.GetValue(height), PriorSteps = result.GetValue(priorSteps), DecoderSteps = result.GetValue(decoderSteps),
                    PriorGuidance = result.GetValue(priorGuidance), DecoderGuidance = result.GetValue(decoderGuidance), Noise = result.GetValue(rng) ?? NoiseSources.Default,
                };
                cascadeRequest.Validate();
                var cascadeFolder = CascadeFolder.Open(folder);
                foreach (var path in outputs) IO.OutputFile.CheckWritable(path, "--output");
                return RunCascade(cascadeFolder, cascadeRequest, settings, outputs, result.GetValue(quiet), cancellation);
            }
            foreach (var (option, name) in new (Option, string)[] { (priorSteps, "--prior-steps"), (decoderSteps, "--decoder-steps"), (priorGuidance, "--prior-guidance"), (decoderGuidance, "--decoder-guidance") })
                if (result.GetResult(option) is { Implicit: false })
                    throw new InvalidArgumentException(name, $"applies to Stable Cascade folders; {folder} is a Stable Diffusion folder (use --steps and --guidance)");
            var size = StableDiffusionPipeline.ConfiguredSize(folder) ?? (512, 512);
            var request = new GenerationRequest
            {
                Prompt = result.GetValue(prompt)!,
                NegativePrompt = result.GetValue(negative) ?? "",
                Steps = result.GetValue(steps),
                Guidance = result.GetValue(guidance), // null: the model's (model_index.json), else 7.5
                Scheduler = result.GetValue(scheduler),
                Seed = result.GetValue(seed),
                Width = result.GetValue(width) ?? size.Width,
                Height = result.GetValue(height) ?? size.Height,
                Count = result.GetValue(count),
                Strength = result.GetValue(strength),
                Noise = result.GetValue(rng) ?? NoiseSources.Default,
            };
            string? initPath = result.GetValue(init);
            var control = ControlArguments.Parse(result.GetValue(controlImage) ?? [], result.GetValue(controlModel) ?? [], result.GetValue(controlScale) ?? [],
                result.GetValue(controlStart) ?? [], result.GetValue(controlEnd) ?? [], folder);
            request.Validate();
            request.ValidateStrength(); // Validate checks it only once an init image is set; --strength 2 is wrong either way
            double? modelGuidance = StableDiffusionPipeline.ConfiguredGuidance(folder);
            foreach (var path in outputs) IO.OutputFile.CheckWritable(path, "--output");
            if (initPath is not null)
                request = request with { InitImage = ImageTensor.LoadInitImage(initPath, request.Width, request.Height) };
            if (control is not null)
                request = request with { Controls = control.LoadImages(request.Width, request.Height) };
            request.Validate();
            // The size is known before the sessions exist: the UNet is planned for exactly these shapes (no warm-up call:
            // a one-shot run would only move the first step's cost into loading).
            // LoRA files are read (and their format checked) before any session is made.
            var adapters = (result.GetValue(lora) ?? []).Select(Lora.LoraAdapter.Parse).ToList();
            var loraOptions = adapters.Count == 0 ? null : new Lora.LoraOptions(adapters, result.GetValue(loraPartial));
            using var pipeline = StableDiffusionPipeline.Load(folder, settings, result.GetValue(lowMemory), GenerationPlan.For(request, warmUp: false, modelGuidance), loraOptions, control?.Options);
            foreach (var adapter in adapters)
            {
                var keys = adapter.Layers.Select(l => l.Key).ToHashSet(StringComparer.Ordinal);
                var perComponent = pipeline.LoraReports.Select(r => (r.Component, Count: r.AppliedKeys.Count(keys.Contains))).Where(c => c.Count > 0);
                int missed = pipeline.LoraReports.Sum(r => r.Unmatched.Count(keys.Contains));
                Console.Error.WriteLine($"lora: {Path.GetFileName(adapter.Path)} × {adapter.Multiplier.ToString(CultureInfo.InvariantCulture)}: {keys.Count - missed}/{keys.Count} tensors applied ({string.Join(", ", perComponent.Select(c => $"{c.Component} {c.Count}"))})"
                    + (missed > 0 ? $"; {missed} matched no weight (--lora-partial)" : ""));
            }
            if (!result.GetValue(quiet)) RuntimeOptions.ReportCache(settings, Console.Error);

            using var progress = new StepProgressReporter(result.GetValue(quiet), Console.Error);
            var generated = pipeline.Generate(request, progress.Report, cancellation);
            foreach (var warning in generated.Warnings) Console.Error.WriteLine($"warning: {warning}");
            for (int i = 0; i < generated.Images.Count; i++) generated.SavePng(outputs[i], i);
            var t = generated.Timings;
            string encoderPart = initPath is null ? "" : FormattableString.Invariant($"vae encoder {t.ImageEncoder.TotalSeconds:0.000} s, ");
            string controlPart = control is null ? "" : FormattableString.Invariant($" (controlnet {t.ControlNet.TotalSeconds:0.000} s of it)");
            Console.Out.WriteLine(FormattableString.Invariant(
                $"wrote {string.Join(", ", outputs)} ({generated.Width}x{generated.Height}, {request.Steps} steps {generated.Scheduler}, seed {generated.Seeds[0]}) in {t.Total.TotalSeconds:0.00} s: text encoder {t.TextEncoder.TotalSeconds:0.000} s, {encoderPart}unet {t.Denoiser.TotalSeconds:0.000} s{controlPart} ({t.DenoiserCalls} calls, {t.StepsPerSecond:0.00} it/s), vae decoder {t.Decoder.TotalSeconds:0.000} s"));
            return 0;
        })));
        return command;
    }

    /// <summary>Stable Cascade: the three stages with progress per stage, PNGs with their parameters, a summary line with each stage's time.</summary>
    private static int RunCascade(CascadeFolder folder, CascadeRequest request, SessionSettings settings, string[] outputs, bool quiet, CancellationToken cancellation)
    {
        using var pipeline = StableCascadePipeline.Load(folder, settings);
        if (!quiet) RuntimeOptions.ReportCache(settings, Console.Error);
        using var progress = new StepProgressReporter(quiet, Console.Error);
        var generated = pipeline.Generate(request, p => progress.Report(p.Progress, p.Stage), cancellation);
        foreach (var warning in generated.Warnings) Console.Error.WriteLine($"warning: {warning}");
        int priorSteps = request.PriorSteps ?? folder.PriorSteps, decoderSteps = request.DecoderSteps ?? folder.DecoderSteps;
        double priorGuidance = request.PriorGuidance ?? folder.PriorGuidance, decoderGuidance = request.DecoderGuidance ?? folder.DecoderGuidance;
        string noise = request.Noise.Trim().ToLowerInvariant();
        string sampler = FormattableString.Invariant($"{generated.Scheduler} (prior {priorSteps}, decoder {decoderSteps} steps; decoder CFG {decoderGuidance})");
        for (int i = 0; i < generated.Images.Count; i++)
        {
            var parameters = new GenerationParameters(request.Prompt, request.NegativePrompt, (long)generated.Seeds[i], priorSteps + decoderSteps, sampler, priorGuidance,
                generated.Width, generated.Height, pipeline.Name, null, noise == NoiseSources.Default ? null : noise);
            PngWriter.Write(outputs[i], generated.Image(i), parameters);
        }
        var t = generated.Timings;
        string stages = string.Join(", ", generated.Stages.Select(s => s.Steps > 0
            ? FormattableString.Invariant($"{s.Stage} {s.Total.TotalSeconds:0.000} s ({s.Calls} calls, {s.Steps / Math.Max(s.Total.TotalSeconds, 1e-9):0.00} it/s)")
            : FormattableString.Invariant($"{s.Stage} {s.Total.TotalSeconds:0.000} s")));
        Console.Out.WriteLine(FormattableString.Invariant(
            $"wrote {string.Join(", ", outputs)} ({generated.Width}x{generated.Height}, Stable Cascade prior {priorSteps} + decoder {decoderSteps} steps, seed {generated.Seeds[0]}) in {t.Total.TotalSeconds:0.00} s: text encoder {t.TextEncoder.TotalSeconds:0.000} s, {stages}"));
        return 0;
    }

    /// <summary>One path per image; checked (folder exists and is writable) before any work so a bad path fails fast.</summary>
    internal static string[] OutputPaths(string output, int count)
    {
        IO.OutputFile.CheckWritable(output, "--output");
        if (count <= 1) return [output];
        string stem = Path.Combine(Path.GetDirectoryName(output) ?? "", Path.GetFileNameWithoutExtension(output));
        string ext = Path.GetExtension(output) is { Length: > 0 } e ? e : ".png";
        return Enumerable.Range(0, count).Select(i => $"{stem}-{i}{ext}").ToArray();
    }
}

/// <summary>Step i/N and it/s on stderr: redrawn in place on a terminal, a few plain lines when redirected.</summary>
internal sealed class StepProgressReporter(bool quiet, TextWriter error) : IDisposable
{
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private int _lastQuarter = -1;
    private bool _drew;

    private string? _stage;

    public void Report(GenerationProgress p) => Report(p, null);

    /// <summary>A step of one stage of a multi-stage pipeline (each stage gets its own bar or lines).</summary>
    public void Report(GenerationProgress p, string? stage)
    {
        if (quiet) return;
        if (stage != _stage)
        {
            if (_drew) error.WriteLine();
            _drew = false;
            _lastQuarter = -1;
            _stage = stage;
        }
        string line = string.Create(CultureInfo.InvariantCulture, $"{(stage is null ? "" : stage + " ")}step {p.Step}/{p.TotalSteps}  {p.StepsPerSecond:0.00} it/s  {p.Elapsed.TotalSeconds:0.0} s");
        if (_interactive)
        {
            int filled = p.TotalSteps == 0 ? 0 : 30 * p.Step / p.TotalSteps;
            error.Write($"\r[{new string('#', filled)}{new string('.', 30 - filled)}] {line}   ");
            _drew = true;
            return;
        }
        int quarter = p.TotalSteps == 0 ? 4 : 4 * p.Step / p.TotalSteps;
        if (quarter != _lastQuarter) { error.WriteLine(line); _lastQuarter = quarter; }
    }

    public void Dispose()
    {
        if (_drew) error.WriteLine();
    }
}
