using System.CommandLine;
using System.Diagnostics;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff create-model: a complete random-weight SD folder of a known architecture, for tests and benchmarks.</summary>
public static class CreateModelCommand
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = $"one of {string.Join(", ", StableDiffusionConfig.Presets.Select(p => p.Name).Concat(StableCascadeConfig.Presets.Select(p => p.Name)))}", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "folder to write (created; model files in it are replaced)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "seed of the random weights", DefaultValueFactory = _ => 0 };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "a folder with a CLIP vocab.json + merges.txt to copy into tokenizer/ (default: a tiny byte-level vocabulary)" };
        var controlNet = new Option<bool>("--controlnet") { Description = "write a random-weight ControlNet for the Stable Diffusion architecture instead (controlnet/ + unet/ taking its residuals; the UNet is the --arch folder's of the same --seed): generate --model BASE --control-model OUT" };
        var command = new Command("create-model", "Write a diffusers-style ONNX folder with random weights and the exact shapes of a known architecture (pictures are noise; time and memory are real).")
        {
            arch, output, seed, tokenizer, controlNet,
        };
        command.SetAction(result => VerbRunner.Run(() =>
        {
            string name = result.GetValue(arch)!;
            var options = new FolderWriteOptions
            {
                TokenizerSource = result.GetValue(tokenizer),
                Progress = message => Console.Error.WriteLine(message),
            };
            var sw = Stopwatch.StartNew();
            var cascade = StableCascadeConfig.Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
            string configName = cascade?.Name ?? StableDiffusionConfig.Preset(name).Name;
            if (result.GetValue(controlNet) && cascade is not null)
                throw new InvalidArgumentException("--controlnet", $"applies to Stable Diffusion architectures; {cascade.Name} is a Stable Cascade one");
            var written = result.GetValue(controlNet)
                ? StableDiffusionArchitecture.WriteControlNetFolder(StableDiffusionConfig.Preset(name), result.GetValue(output)!, result.GetValue(seed), options)
                : cascade is not null
                ? StableCascadeArchitecture.WriteFolder(cascade, result.GetValue(output)!, result.GetValue(seed), options)
                : StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Preset(name), result.GetValue(output)!, result.GetValue(seed), options);
            foreach (var c in written)
                Console.Out.WriteLine($"{c.Name,-13} {InspectCommand.Count(c.Parameters),15} parameters  {InspectCommand.Bytes(c.FileBytes),10}{(c.ExternalData ? "  (external data)" : "")}");
            Console.Out.WriteLine(FormattableString.Invariant($"wrote {result.GetValue(output)} ({configName}{(result.GetValue(controlNet) ? " ControlNet" : "")}) in {sw.Elapsed.TotalSeconds:0.0} s; random weights: its pictures are noise"));
            return 0;
        }));
        return command;
    }
}
