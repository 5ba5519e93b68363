using System.CommandLine;
using System.Diagnostics;
using EdgeDiffusion.Conversion;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff convert: a diffusers Stable Diffusion folder (safetensors) → an EdgeDiffusion ONNX folder.</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)" };
        var output = new Option<string>("--output", "-o") { Description = "folder to write (staged beside it and moved in when complete)", Required = true };
        var arch = new Option<string>("--arch") { Description = "auto (read the configs), or sd15|sd21|sd-turbo|tiny: check the converted shapes equal that preset's", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string>("--dtype") { Description = "float32 (float16 is not implemented yet)", DefaultValueFactory = _ => "float32" };
        arch.AcceptOnlyFromAmong("auto", "sd15", "sd21", "sd-turbo", "tiny");
        dtype.AcceptOnlyFromAmong("float32", "float16");
        var command = new Command("convert", "Convert a diffusers Stable Diffusion folder's safetensors weights into an ONNX model folder that generate runs.")
        {
            checkpoint, output, arch, dtype,
        };
        command.SetAction(result => VerbRunner.Run(() =>
        {
            var sw = Stopwatch.StartNew();
            string to = result.GetValue(output)!;
            var converted = DiffusersConverter.Convert(result.GetValue(checkpoint)!, to, new ConvertOptions
            {
                Architecture = result.GetValue(arch)!,
                DType = result.GetValue(dtype)!,
                Progress = message => Console.Error.WriteLine(message),
            });
            foreach (var c in converted.Components)
                Console.Out.WriteLine($"{c.Name,-13} {InspectCommand.Count(c.Parameters),15} parameters  {InspectCommand.Bytes(c.FileBytes),10}{(c.ExternalData ? "  (external data)" : "")}");
            Console.Out.WriteLine(FormattableString.Invariant($"wrote {to} ({converted.Config.Name}) in {sw.Elapsed.TotalSeconds:0.0} s; every checkpoint tensor used once"));
            return 0;
        }));
        return command;
    }
}
