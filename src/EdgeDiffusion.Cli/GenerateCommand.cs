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
        var decompress = RuntimeOptions.DecompressOption();
        var command = new Command("generate", "Generate images from a text prompt with a Stable Diffusion-style ONNX model folder.")
        {
            prompt, model, negative, steps, guidance, scheduler, seed, width, height, count, init, strength, output, threads, quiet, cacheDir, noCache, lowMemory, sharedAllocator, decompress,
        };
        var devices = RuntimeOptions.AddDeviceOptions(command);
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            var outputs = OutputPaths(result.GetValue(output)!, result.GetValue(count));
            string folder = ModelOption.Resolve(result.GetValue(model));
            var settings = RuntimeOptions.Settings(result.GetValue(threads), result.GetValue(noCache), result.GetValue(cacheDir), result.GetValue(sharedAllocator),
                result.GetValue(decompress), devices.Resolve(result, Console.Error));
            var size = StableDiffusionPipeline.ConfiguredSize(folder) ?? (512, 512);
            var request = new GenerationRequest
            {
                Prompt = result.GetValue(prompt)!,
                NegativePrompt = result.GetValue(negative) ?? "",
                Steps = result.GetValue(steps),
                Guidance = result.GetValue(guidance) ?? StableDiffusionPipeline.ConfiguredGuidance(folder) ?? GenerationRequest.DefaultGuidance,
                Scheduler = result.GetValue(scheduler),
                Seed = result.GetValue(seed),
                Width = result.GetValue(width) ?? size.Width,
                Height = result.GetValue(height) ?? size.Height,
                Count = result.GetValue(count),
                Strength = result.GetValue(strength),
            };
            string? initPath = result.GetValue(init);
            request.Validate();
            if (initPath is not null) request = request with { InitImage = ImageTensor.LoadInitImage(initPath, request.Width, request.Height) };
            // The size is known before the sessions exist: the UNet is planned for exactly these shapes (no warm-up call:
            // a one-shot run would only move the first step's cost into loading).
            using var pipeline = StableDiffusionPipeline.Load(folder, settings, result.GetValue(lowMemory), GenerationPlan.For(request, warmUp: false));
            if (!result.GetValue(quiet)) RuntimeOptions.ReportCache(settings, Console.Error);

            using var progress = new StepProgressReporter(result.GetValue(quiet), Console.Error);
            var generated = pipeline.Generate(request, progress.Report, cancellation);
            foreach (var warning in generated.Warnings) Console.Error.WriteLine($"warning: {warning}");
            for (int i = 0; i < generated.Images.Count; i++)
            {
                var image = ImageTensor.ToImage(generated.Images[i], 1, 3, generated.Height, generated.Width, 0);
                var parameters = new GenerationParameters(request.Prompt, request.NegativePrompt, (long)generated.Seeds[i], request.Steps,
                    generated.Scheduler, request.Guidance, generated.Width, generated.Height, pipeline.Name, initPath is null ? null : request.Strength);
                PngWriter.Write(outputs[i], image, parameters);
            }
            var t = generated.Timings;
            string encoderPart = initPath is null ? "" : FormattableString.Invariant($"vae encoder {t.ImageEncoder.TotalSeconds:0.000} s, ");
            Console.Out.WriteLine(FormattableString.Invariant(
                $"wrote {string.Join(", ", outputs)} ({generated.Width}x{generated.Height}, {request.Steps} steps {generated.Scheduler}, seed {generated.Seeds[0]}) in {t.Total.TotalSeconds:0.00} s: text encoder {t.TextEncoder.TotalSeconds:0.000} s, {encoderPart}unet {t.Denoiser.TotalSeconds:0.000} s ({t.DenoiserCalls} calls, {t.StepsPerSecond:0.00} it/s), vae decoder {t.Decoder.TotalSeconds:0.000} s"));
            return 0;
        })));
        return command;
    }

    /// <summary>One path per image; checked before any work so a bad path fails fast.</summary>
    internal static string[] OutputPaths(string output, int count)
    {
        if (string.IsNullOrWhiteSpace(output)) throw new InvalidArgumentException("--output", "empty; give a file name such as out.png");
        string full = Path.GetFullPath(output);
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir)) throw new InvalidArgumentException("--output", $"folder {dir} does not exist; create it first");
        if (Directory.Exists(full)) throw new InvalidArgumentException("--output", $"{output} is a folder; give a file name such as {Path.Combine(output, "out.png")}");
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

    public void Report(GenerationProgress p)
    {
        if (quiet) return;
        string line = string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.TotalSteps}  {p.StepsPerSecond:0.00} it/s  {p.Elapsed.TotalSeconds:0.0} s");
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
