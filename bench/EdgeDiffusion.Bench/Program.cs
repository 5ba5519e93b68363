using System.Globalization;

namespace EdgeDiffusion.Bench;

/// <summary>
/// Benchmarks that are not tests: they print figures to record in docs/benchmarks.md.
/// Usage: dotnet run -c Release --project bench/EdgeDiffusion.Bench -- onnx-io [--gb 3.4] [--width 4096] [--dir .bench/onnx-io]
///        dotnet run -c Release --project bench/EdgeDiffusion.Bench -- serve-load [--requests 200] [--clients 8] [--steps 20] [--max-queue 8] [--warmup 100] [--model DIR]
///        dotnet run -c Release --project bench/EdgeDiffusion.Bench -- lora-merge [--unet FILE] [--rank 32] [--runs 3]
///        dotnet run -c Release --project bench/EdgeDiffusion.Bench -- pipeline [--arch tiny|sd15] [--size 64] [--steps 20] [--warmup 2]
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string verb = args.Length > 0 ? args[0] : "";
        string Option(string name, string fallback)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        switch (verb)
        {
            case "onnx-io":
                OnnxIoBenchmark.Run(Option("--dir", Path.Combine(".bench", "onnx-io")),
                    double.Parse(Option("--gb", "3.4"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--width", "4096"), CultureInfo.InvariantCulture));
                return 0;
            case "pipeline":
                PipelineBenchmark.Run(Option("--dir", Path.Combine(".bench", "models")), Option("--arch", "tiny"),
                    int.Parse(Option("--size", "64"), CultureInfo.InvariantCulture), int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--warmup", "2"), CultureInfo.InvariantCulture), Option("--scheduler", "euler"),
                    double.Parse(Option("--guidance", "7.5"), CultureInfo.InvariantCulture), args.Contains("--model") ? Option("--model", "") : null);
                return 0;
            case "serve-load":
                return ServerLoadBenchmark.Run(args.Contains("--model") ? Option("--model", "") : null,
                    int.Parse(Option("--requests", "200"), CultureInfo.InvariantCulture), int.Parse(Option("--clients", "8"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture), int.Parse(Option("--max-queue", "8"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--warmup", "100"), CultureInfo.InvariantCulture));
            case "startup":
                StartupBenchmark.Run(Option("--dir", Path.Combine(".bench", "models")), Option("--arch", "sd15"), Option("--component", "unet"),
                    Option("--mode", "plain"), Option("--cache-dir", Path.Combine(".bench", "cache")),
                    int.Parse(Option("--runs", "4"), CultureInfo.InvariantCulture), int.Parse(Option("--latent", "64"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--batch", "2"), CultureInfo.InvariantCulture), args.Contains("--fixed"), args.Contains("--fresh-inputs"),
                    !args.Contains("--no-arena"),
                    args.Contains("--memory-pattern") ? true : args.Contains("--no-memory-pattern") ? false : null,
                    args.Contains("--model-dir") ? Option("--model-dir", "") : null,
                    Enum.Parse<Runtime.DecompressionMode>(Option("--decompress", "jit"), ignoreCase: true));
                return 0;
            case "shapes":
            {
                string model = Option("--model", Path.Combine("models", "tiny-shapes"));
                var set = Shapes.HeldOutSet.Load(Option("--heldout", Path.Combine(model, "evaluation", "heldout.json")));
                int seedCount = int.Parse(Option("--seeds", "2"), CultureInfo.InvariantCulture);
                if (args.Contains("--through-vae"))
                {
                    string? dir = args.Contains("--save") ? Directory.CreateDirectory(Path.Combine(".bench", "shapes")).FullName : null;
                    Console.WriteLine($"drawn: {Shapes.ShapesEvaluation.Drawn(set, saveDir: dir)}");
                    using var encoder = new Pipelines.OnnxVaeEncoder(Path.Combine(model, "vae_encoder", "model.onnx"));
                    using var decoder = new Pipelines.OnnxVaeDecoder(Path.Combine(model, "vae_decoder", "model.onnx"));
                    var vae = Shapes.ShapesEvaluation.Drawn(set, encoder, decoder, dir);
                    Console.WriteLine($"{model}: drawn, through vae_encoder -> vae_decoder: {vae}");
                    foreach (var miss in vae.Misses.Take(20)) Console.WriteLine("  miss: " + miss);
                    return 0;
                }
                using var pipeline = Pipelines.StableDiffusionPipeline.Load(model);
                // As `edgediff generate` does: the model's recommended guidance unless one is given.
                double guidance = args.Contains("--guidance") ? double.Parse(Option("--guidance", ""), CultureInfo.InvariantCulture)
                    : Pipelines.StableDiffusionPipeline.ConfiguredGuidance(model) ?? Pipelines.GenerationRequest.DefaultGuidance;
                var watch = System.Diagnostics.Stopwatch.StartNew();
                var score = Shapes.ShapesEvaluation.Run(pipeline, set, Enumerable.Range(0, seedCount).Select(i => (ulong)i).ToArray(),
                    int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture), guidance,
                    Option("--scheduler", "euler"), args.Contains("--save") ? Directory.CreateDirectory(Path.Combine(".bench", "shapes")).FullName : null);
                Console.WriteLine($"{model} (guidance {guidance.ToString(CultureInfo.InvariantCulture)}): {score} in {watch.Elapsed.TotalSeconds:0.0} s");
                foreach (var miss in score.Misses.Take(20)) Console.WriteLine("  miss: " + miss);
                if (args.Contains("--grid")) Shapes.ShapesGrid.Write(pipeline, Option("--grid", "grid.png"), guidance);
                return 0;
            }
            case "controlnet":
                ControlNetBenchmark.Evaluate(Option("--model", Path.Combine("models", "tiny-shapes")), Option("--control-model", Path.Combine("models", "tiny-shapes-controlnet")),
                    int.Parse(Option("--seeds", "2"), CultureInfo.InvariantCulture), int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture),
                    Option("--scheduler", "euler"), double.Parse(Option("--scale", "1"), CultureInfo.InvariantCulture),
                    args.Contains("--save") ? Directory.CreateDirectory(Path.Combine(".bench", "controlnet")).FullName : null);
                return 0;
            case "controlnet-cost":
                ControlNetBenchmark.Cost(Option("--model", Path.Combine("models", "tiny-shapes")), Option("--control-model", Path.Combine("models", "tiny-shapes-controlnet")),
                    int.Parse(Option("--size", "64"), CultureInfo.InvariantCulture), int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--runs", "5"), CultureInfo.InvariantCulture), args.Contains("--control-image") ? Option("--control-image", "") : null);
                return 0;
            case "compression-quality":
                CompressionQualityBenchmark.Run(Option("--model", Path.Combine("models", "tiny-shapes")), Option("--dir", Path.Combine(".bench", "compressed")),
                    int.Parse(Option("--seeds", "2"), CultureInfo.InvariantCulture), int.Parse(Option("--steps", "20"), CultureInfo.InvariantCulture),
                    double.Parse(Option("--guidance", "7.5"), CultureInfo.InvariantCulture), args.Contains("--only") ? Option("--only", "") : null,
                    args.Contains("--recipe") ? Option("--recipe", "") : null,
                    Enum.Parse<Runtime.DecompressionMode>(Option("--decompress", "load"), ignoreCase: true));
                return 0;
            case "lora-merge":
                LoraMergeBenchmark.Run(Option("--unet", Path.Combine(".bench", "models", "sd15", "unet", "model.onnx")),
                    int.Parse(Option("--rank", "32"), CultureInfo.InvariantCulture), int.Parse(Option("--runs", "3"), CultureInfo.InvariantCulture),
                    Option("--dir", Path.Combine(".bench", "lora")));
                return 0;
            case "decompress-ops":
                DecompressionOpsBenchmark.Run(int.Parse(Option("--runs", "5"), CultureInfo.InvariantCulture),
                    int.Parse(Option("--threads", "2"), CultureInfo.InvariantCulture), args.Contains("--only") ? Option("--only", "") : null);
                return 0;
            default:
                Console.Error.WriteLine("usage: EdgeDiffusion.Bench compression-quality [--model models/tiny-shapes] [--seeds 2] [--only TEXT] [--recipe FILE] [--decompress load|jit]\n" +
                    "       EdgeDiffusion.Bench decompress-ops [--runs 5] [--threads 2] [--only TEXT]\n" +
                    "       EdgeDiffusion.Bench lora-merge [--unet .bench/models/sd15/unet/model.onnx] [--rank 32] [--runs 3] [--dir .bench/lora]\n" +
                    "       EdgeDiffusion.Bench onnx-io [--gb 3.4] [--width 4096] [--dir DIR]\n" +
                    "       EdgeDiffusion.Bench startup [--arch sd15] [--component unet] [--mode plain|ours|cache-cold|cache-warm] [--runs 4] [--latent 64] [--batch 2] [--fixed] [--fresh-inputs] [--no-arena] [--memory-pattern|--no-memory-pattern] [--model-dir DIR] [--decompress jit|load]\n" +
                    "       EdgeDiffusion.Bench shapes [--model models/tiny-shapes] [--seeds 2] [--steps 20] [--guidance G (default: the model's)] [--save] [--grid FILE] [--through-vae]\n" +
                    "       EdgeDiffusion.Bench controlnet [--model models/tiny-shapes] [--control-model models/tiny-shapes-controlnet] [--seeds 2] [--steps 20] [--scheduler euler] [--scale 1] [--save]\n" +
                    "       EdgeDiffusion.Bench controlnet-cost [--model models/tiny-shapes] [--control-model models/tiny-shapes-controlnet] [--size 64] [--steps 20] [--runs 5] [--control-image FILE]\n" +
                    "       EdgeDiffusion.Bench pipeline [--arch tiny|sd15|sd21|sd-turbo | --model DIR] [--size 64] [--steps 20] [--warmup 2] [--scheduler euler] [--guidance 7.5] [--dir DIR]");
                return 2;
        }
    }
}
