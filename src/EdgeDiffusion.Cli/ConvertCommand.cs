using System.CommandLine;
using System.Diagnostics;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Conversion;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff convert: a diffusers Stable Diffusion folder or a single-file SD 1.x/2.x checkpoint (safetensors) → an EdgeDiffusion ONNX folder.</summary>
public static class ConvertCommand
{
    public static Command Create()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), a single-file SD 1.x/2.x .safetensors checkpoint, or one component folder (config.json + weights: UNet2DConditionModel, AutoencoderKL, CLIPTextModel, ControlNetModel)" };
        var output = new Option<string>("--output", "-o") { Description = "folder to write (staged beside it and moved in when complete)", Required = true };
        var arch = new Option<string>("--arch") { Description = "auto (read the configs, or a single file's shapes), or sd15|sd21|sd-turbo|tiny: a folder's converted shapes must equal that preset's; a single file is read as that preset; cascade-prior-lite|cascade-decoder-lite: a Stability single-file Stage C / Stage B", DefaultValueFactory = _ => "auto" };
        var dtype = new Option<string>("--dtype") { Description = "float32 (weights widened), or float16 (weights kept float16 in the file, Cast to float32 in the graph)", DefaultValueFactory = _ => "float32" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "single file: a CLIP tokenizer folder (vocab.json, merges.txt); default: tokenizer/ or those files beside the checkpoint" };
        var config = new Option<string?>("--config") { Description = "single file: a diffusers folder whose unet/, vae/, text_encoder/ config.json describe the architecture (instead of the SD 1.x/2.x defaults); a Stable Cascade stage file: the diffusers prior/ or decoder/ folder (or its config.json)" };
        var unet = new Option<string?>("--unet") { Description = "ControlNet: the base model (a diffusers Stable Diffusion folder or its unet/ folder) whose UNet is written beside the ControlNet with the residual inputs generate feeds" };
        var compress = new Option<string?>("--compress") { Description = "compress in the same run: a recipe .json (from compress --mixed-bit --save-recipe), or palettize:BITS, linear:int8|int4|uint8|uint4, prune:SPARSITY" };
        arch.AcceptOnlyFromAmong("auto", "sd15", "sd21", "sd-turbo", "tiny", "cascade-prior-lite", "cascade-decoder-lite");
        dtype.AcceptOnlyFromAmong("float32", "float16");
        var command = new Command("convert", "Convert a diffusers Stable Diffusion folder, a single-file SD 1.x/2.x checkpoint (safetensors) or one component folder (a UNet, VAE, text encoder or ControlNet) into ONNX that generate runs.")
        {
            checkpoint, output, arch, dtype, tokenizer, config, unet, compress,
        };
        command.SetAction(result => VerbRunner.Run(() =>
        {
            var sw = Stopwatch.StartNew();
            string to = result.GetValue(output)!;
            var converted = DiffusersConverter.Convert(result.GetValue(checkpoint)!, to, new ConvertOptions
            {
                Architecture = result.GetValue(arch)!,
                DType = result.GetValue(dtype)!,
                TokenizerFolder = result.GetValue(tokenizer),
                ConfigFolder = result.GetValue(config),
                BaseUNet = result.GetValue(unet),
                Compression = result.GetValue(compress) is { } spec ? Compression(spec) : null,
                Progress = message => Console.Error.WriteLine(message),
            });
            foreach (var c in converted.Components)
                Console.Out.WriteLine($"{c.Name,-18} {InspectCommand.Count(c.Parameters),15} parameters  {InspectCommand.Bytes(c.FileBytes),10}{(c.ExternalData ? "  (external data)" : "")}");
            if (converted.Compression is { } report) Console.Out.Write(report.ToTable());
            Console.Out.WriteLine(FormattableString.Invariant($"wrote {to} ({converted.Architecture}{(converted.Compression is null ? "" : ", compressed")}) in {sw.Elapsed.TotalSeconds:0.0} s; every checkpoint tensor used once"));
            return 0;
        }));
        return command;
    }

    /// <summary>--compress: a saved recipe file, or METHOD:VALUE with compress's defaults for everything else.</summary>
    internal static ConversionCompression Compression(string spec)
    {
        if (spec.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            var plan = CompressionRecipe.Load(spec);
            // a recipe names its tensors, small ones included (as compress --recipe)
            return new ConversionCompression(folder => plan.EncoderChooser(folder, spec),
                new FolderCompressionOptions { Model = new ModelCompressionOptions { Selection = new WeightSelection { MinimumElements = 0 } } });
        }
        int colon = spec.IndexOf(':');
        string method = colon < 0 ? spec : spec[..colon];
        string? value = colon < 0 ? null : spec[(colon + 1)..];
        int bits = 6;
        string dtype = "int8";
        double sparsity = 0;
        switch (method.ToLowerInvariant())
        {
            case "palettize" or "palettization":
                if (value is not null && !int.TryParse(value, out bits)) throw new InvalidArgumentException("--compress", $"'{spec}': palettize takes index bits, e.g. palettize:6");
                break;
            case "linear":
                dtype = value ?? dtype;
                break;
            case "prune" or "pruning":
                if (value is null || !double.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out sparsity))
                    throw new InvalidArgumentException("--compress", $"'{spec}': prune takes the fraction of weights set to zero, e.g. prune:0.5");
                break;
            default:
                throw new InvalidArgumentException("--compress", $"'{spec}' is neither a recipe .json nor palettize:BITS, linear:DTYPE or prune:SPARSITY");
        }
        var encoder = WeightEncoders.Create(CompressCommand.Spec(method, bits, dtype, asymmetric: false, granularity: null, blockSize: 0, groupSize: 16,
            channelScale: false, sparsity, nm: null, then: null, seed: 0));
        return new ConversionCompression(_ => (_, _) => encoder, new FolderCompressionOptions());
    }
}
