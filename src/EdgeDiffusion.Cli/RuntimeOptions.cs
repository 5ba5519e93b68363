using System.CommandLine;
using EdgeDiffusion.Runtime;

namespace EdgeDiffusion.Cli;

/// <summary>Session settings from the options every model-running verb shares.</summary>
public static class RuntimeOptions
{
    public static SessionSettings Settings(int threads, bool noCache, string? cacheDir, bool sharedAllocator = false,
        DecompressionMode decompression = DecompressionMode.Auto, ExecutionPlan? execution = null) => SessionSettings.Default with
    {
        IntraOpThreads = threads,
        Execution = execution ?? ExecutionPlan.Cpu,
        Decompression = decompression,
        SharedAllocator = sharedAllocator,
        Cache = noCache ? null : new SessionCache(cacheDir ?? SessionCache.DefaultDirectory, message => Console.Error.WriteLine($"warning: {message}")),
    };

    /// <summary>--decompress: when compressed weights become float32.</summary>
    /// <remarks>Shown and parsed in lower case as the docs write it (jit|load); any case is accepted.</remarks>
    public static Option<DecompressionMode> DecompressOption() => new("--decompress")
    {
        Description = "compressed models only: auto (the default) is int8 where the model carries calibrated activation ranges, else jit; int8 runs every layer on int8 kernels (palettes and int4 re-quantized at start, int8 memory, faster than float32); jit keeps weights compressed in memory and expands each layer when it runs; load expands them once at start (float32 memory and speed)",
        HelpName = string.Join("|", Enum.GetNames<DecompressionMode>().Select(n => n.ToLowerInvariant())),
        // No DefaultValueFactory: help would print the enum's own casing ("Auto"); an absent option is default(T), Auto.
        CustomParser = result =>
        {
            string token = result.Tokens.Count > 0 ? result.Tokens[^1].Value.Trim() : "";
            if (token.Length > 0 && char.IsLetter(token[0]) && Enum.TryParse<DecompressionMode>(token, ignoreCase: true, out var mode)) return mode;
            result.AddError($"\"{token}\" is not a decompression mode");
            return DecompressionMode.Auto;
        },
    };

    /// <summary>One line saying which sessions came from the cache.</summary>
    public static void ReportCache(SessionSettings settings, TextWriter error)
    {
        if (settings.Cache is not { Outcomes.Count: > 0 } cache) return;
        error.WriteLine("session cache: " + string.Join(", ", cache.Outcomes.Select(o =>
            $"{Path.GetFileName(Path.GetDirectoryName(o.Key))} {o.Value.ToString().ToLowerInvariant()}")) + $" ({cache.Directory})");
    }

    /// <summary>Adds --device, --ep, --ep-option and --fallback to a verb that runs a model.</summary>
    public static DeviceOptions AddDeviceOptions(Command command)
    {
        var options = new DeviceOptions();
        command.Options.Add(options.Device);
        command.Options.Add(options.Ep);
        command.Options.Add(options.EpOption);
        command.Options.Add(options.Fallback);
        return options;
    }
}

/// <summary>The device options every model-running verb shares, and their resolution into an <see cref="ExecutionPlan"/>.</summary>
public sealed class DeviceOptions
{
    public Option<string> Device { get; } = new("--device")
    {
        Description = "auto, cpu, gpu or npu: the hardware to run on (through ONNX Runtime's EP devices; CoreML on Apple platforms)",
        DefaultValueFactory = _ => "auto",
    };

    public Option<string?> Ep { get; } = new("--ep")
    {
        Description = $"an execution provider: {string.Join(", ", ExecutionProviders.ShortNames.Keys)}",
    };

    public Option<string[]> EpOption { get; } = new("--ep-option")
    {
        Description = "key=value for the --ep provider, repeatable (CoreML: MLComputeUnits=CPUAndNeuralEngine|CPUAndGPU|CPUOnly|ALL, ModelFormat=MLProgram, ModelCacheDirectory=DIR …)",
        AllowMultipleArgumentsPerToken = false,
        Arity = ArgumentArity.ZeroOrMore,
    };

    public Option<string?> Fallback { get; } = new("--fallback")
    {
        Description = "cpu: when the device or provider is missing or fails to start, continue on the CPU with a warning",
    };

    public DeviceRequest Request(ParseResult result)
    {
        string device = result.GetValue(Device) ?? "auto";
        var kind = device.ToLowerInvariant() switch
        {
            "auto" => DeviceKind.Auto,
            "cpu" => DeviceKind.Cpu,
            "gpu" => DeviceKind.Gpu,
            "npu" => DeviceKind.Npu,
            _ => throw new InvalidArgumentException("--device", $"'{device}' is not a device; use auto, cpu, gpu or npu"),
        };
        string? fallback = result.GetValue(Fallback);
        if (fallback is not null && !fallback.Equals("cpu", StringComparison.OrdinalIgnoreCase))
            throw new InvalidArgumentException("--fallback", $"'{fallback}'; the only fallback is cpu");
        return new DeviceRequest
        {
            Device = kind,
            Ep = result.GetValue(Ep),
            EpOptions = DeviceSelector.ParseOptions(result.GetValue(EpOption) ?? []),
            FallbackToCpu = fallback is not null,
        };
    }

    /// <summary>The plan for this machine; warnings (fallbacks) go to <paramref name="error"/>.</summary>
    public ExecutionPlan Resolve(ParseResult result, TextWriter error) =>
        DeviceSelector.Resolve(Request(result), DeviceCatalog.Current(), message => error.WriteLine($"warning: {message}"));
}
