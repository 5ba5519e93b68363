using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Runtime;

/// <summary>The kind of hardware a session is asked to run on (<c>--device</c>).</summary>
public enum DeviceKind
{
    /// <summary>The best device ONNX Runtime finds; plain CPU when the CPU is all there is.</summary>
    Auto,
    Cpu,
    Gpu,
    Npu,
}

/// <summary>Where a node's kernel ran, as a report shows it (JSON: "CPU", "GPU", "NPU", "mixed").</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(ComputeUnitJsonConverter))]
public enum ComputeUnit
{
    Cpu,
    Gpu,
    Npu,

    /// <summary>The provider's own runtime picks per layer (CoreML with MLComputeUnits=ALL): not knowable from the trace.</summary>
    Mixed,
}

/// <summary>Writes compute units as the reports name them ("CPU", not 0 or "Cpu").</summary>
public sealed class ComputeUnitJsonConverter : System.Text.Json.Serialization.JsonConverter<ComputeUnit>
{
    public override ComputeUnit Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options) =>
        reader.GetString() switch
        {
            "CPU" => ComputeUnit.Cpu,
            "GPU" => ComputeUnit.Gpu,
            "NPU" => ComputeUnit.Npu,
            "mixed" => ComputeUnit.Mixed,
            var other => throw new System.Text.Json.JsonException($"unknown compute unit '{other}'"),
        };

    public override void Write(System.Text.Json.Utf8JsonWriter writer, ComputeUnit value, System.Text.Json.JsonSerializerOptions options) =>
        writer.WriteStringValue(value == ComputeUnit.Mixed ? "mixed" : value.ToString().ToUpperInvariant());
}

/// <summary>One execution provider × hardware device pair ONNX Runtime offers (<c>OrtEnv.GetEpDevices()</c>), as plain data.</summary>
public sealed record EpDeviceInfo(
    int Index,
    string EpName,
    string EpVendor,
    DeviceKind DeviceType,
    string HardwareVendor,
    uint VendorId,
    uint DeviceId,
    IReadOnlyDictionary<string, string> HardwareMetadata,
    IReadOnlyDictionary<string, string> EpMetadata);

/// <summary>What this process's ONNX Runtime can run on: the providers built in and the EP devices it discovered.</summary>
public sealed record DeviceCatalog(IReadOnlyList<string> Providers, IReadOnlyList<EpDeviceInfo> Devices, bool IsMacOS)
{
    /// <summary>The catalog of this machine (ONNX Runtime's device discovery).</summary>
    public static DeviceCatalog Current()
    {
        var env = OrtEnv.Instance();
        var devices = env.GetEpDevices().Select((d, i) => new EpDeviceInfo(
            i, d.EpName, d.EpVendor, Kind(d.HardwareDevice.Type), d.HardwareDevice.Vendor, d.HardwareDevice.VendorId, d.HardwareDevice.DeviceId,
            new Dictionary<string, string>(d.HardwareDevice.Metadata.Entries), new Dictionary<string, string>(d.EpMetadata.Entries))).ToList();
        return new DeviceCatalog(env.GetAvailableProviders(), devices, OperatingSystem.IsMacOS() || OperatingSystem.IsIOS());
    }

    private static DeviceKind Kind(OrtHardwareDeviceType type) => type switch
    {
        OrtHardwareDeviceType.GPU => DeviceKind.Gpu,
        OrtHardwareDeviceType.NPU => DeviceKind.Npu,
        _ => DeviceKind.Cpu,
    };

    public bool HasProvider(string epName) => Providers.Contains(epName, StringComparer.Ordinal) || Devices.Any(d => d.EpName == epName);

    /// <summary>One line naming every provider and device, for error messages.</summary>
    public string Describe() =>
        $"providers: {string.Join(", ", Providers)}; devices: " +
        (Devices.Count == 0 ? "none" : string.Join(", ", Devices.Select(d => $"{d.DeviceType.ToString().ToUpperInvariant()} via {d.EpName}")));
}

/// <summary>The short provider names of <c>--ep</c> and what they mean to ONNX Runtime.</summary>
public static class ExecutionProviders
{
    public const string Cpu = "CPUExecutionProvider";
    public const string CoreML = "CoreMLExecutionProvider";

    /// <summary>--ep value → ONNX Runtime provider name.</summary>
    public static IReadOnlyDictionary<string, string> ShortNames { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["cpu"] = Cpu,
        ["coreml"] = CoreML,
        ["cuda"] = "CUDAExecutionProvider",
        ["dml"] = "DmlExecutionProvider",
        ["qnn"] = "QNNExecutionProvider",
        ["openvino"] = "OpenVINOExecutionProvider",
        ["xnnpack"] = "XnnpackExecutionProvider",
    };

    /// <summary>The ONNX Runtime name of an --ep value, or a typed error listing the accepted values.</summary>
    public static string Resolve(string shortName) =>
        ShortNames.TryGetValue(shortName, out var name) ? name
        : ShortNames.Values.Contains(shortName, StringComparer.Ordinal) ? shortName
        : throw new InvalidArgumentException("--ep", $"unknown provider '{shortName}'; use one of {string.Join(", ", ShortNames.Keys)}");

    /// <summary>
    /// The compute unit behind a provider name from a trace. CoreML's depends on MLComputeUnits (CPUOnly, CPUAndGPU,
    /// CPUAndNeuralEngine; ALL lets Core ML choose per layer); OpenVINO's on device_type.
    /// </summary>
    public static ComputeUnit ComputeUnitOf(string provider, IReadOnlyDictionary<string, string>? options = null)
    {
        string? Option(string key) => options is not null && options.TryGetValue(key, out var v) ? v : null;
        return provider switch
        {
            Cpu or "XnnpackExecutionProvider" or "DnnlExecutionProvider" or "ACLExecutionProvider" or "ArmNNExecutionProvider" => ComputeUnit.Cpu,
            CoreML => Option("MLComputeUnits") switch
            {
                "CPUOnly" => ComputeUnit.Cpu,
                "CPUAndGPU" => ComputeUnit.Gpu,
                "CPUAndNeuralEngine" => ComputeUnit.Npu,
                _ => ComputeUnit.Mixed,
            },
            "QNNExecutionProvider" => Option("backend_type") is "cpu" ? ComputeUnit.Cpu : Option("backend_type") is "gpu" ? ComputeUnit.Gpu : ComputeUnit.Npu,
            "OpenVINOExecutionProvider" => (Option("device_type") ?? "CPU").ToUpperInvariant() switch
            {
                var d when d.StartsWith("GPU", StringComparison.Ordinal) => ComputeUnit.Gpu,
                var d when d.StartsWith("NPU", StringComparison.Ordinal) => ComputeUnit.Npu,
                _ => ComputeUnit.Cpu,
            },
            "VitisAIExecutionProvider" => ComputeUnit.Npu,
            _ => ComputeUnit.Gpu, // CUDA, TensorRT, DirectML, ROCm, MIGraphX, WebGPU
        };
    }
}

/// <summary>What the user asked for: <c>--device</c>, <c>--ep</c>, <c>--ep-option</c>, <c>--fallback cpu</c>.</summary>
public sealed record DeviceRequest
{
    public DeviceKind Device { get; init; } = DeviceKind.Auto;

    /// <summary>An --ep value (short or ONNX Runtime name), or null to pick by device.</summary>
    public string? Ep { get; init; }

    public IReadOnlyDictionary<string, string> EpOptions { get; init; } = new Dictionary<string, string>();

    /// <summary>Continue on the CPU (with a warning) when the device or provider is missing or fails to start.</summary>
    public bool FallbackToCpu { get; init; }
}

/// <summary>One provider to append to a session: through EP devices (by catalog index) or by name.</summary>
public sealed record ProviderAppend(string EpName, IReadOnlyList<int> DeviceIndices, IReadOnlyDictionary<string, string> Options);

/// <summary>
/// The resolved choice, applied to every session: the providers to append in priority order (ONNX Runtime puts the
/// nodes they cannot take on the CPU provider), or plain CPU when <see cref="Providers"/> is empty.
/// </summary>
public sealed record ExecutionPlan
{
    public static ExecutionPlan Cpu { get; } = new();

    public IReadOnlyList<ProviderAppend> Providers { get; init; } = [];

    /// <summary>Set when --device auto hands the choice to ONNX Runtime's selection policy.</summary>
    public ExecutionProviderDevicePolicy? Policy { get; init; }

    /// <summary>Retry on the CPU when a provider fails while the session is created.</summary>
    public bool FallbackToCpu { get; init; }

    /// <summary>Called with the warning when a session falls back to the CPU.</summary>
    public Action<string>? Warn { get; init; }

    public bool IsCpuOnly => Providers.Count == 0 && Policy is null;

    /// <summary>
    /// Providers that compile partitions into their own format: ONNX Runtime cannot save an optimized graph holding
    /// those, so such sessions are not cached.
    /// </summary>
    public bool CompilesGraph => Policy is not null || Providers.Any(p => p.EpName is ExecutionProviders.CoreML or "QNNExecutionProvider" or "OpenVINOExecutionProvider" or "TensorrtExecutionProvider" or "VitisAIExecutionProvider");

    /// <summary>A stable text for the session cache key and reports (provider, devices, sorted options).</summary>
    public string Signature => IsCpuOnly ? "cpu"
        : (Policy is { } p ? $"policy:{p};" : "") + string.Join("+", Providers.Select(a =>
            a.EpName + "[" + string.Join(",", a.DeviceIndices) + "]" + string.Concat(a.Options.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $";{o.Key}={o.Value}"))));

    /// <summary>The options given to a provider (for the compute unit of its nodes).</summary>
    public IReadOnlyDictionary<string, string>? OptionsOf(string epName) => Providers.FirstOrDefault(p => p.EpName == epName)?.Options;

    /// <summary>Appends the providers to <paramref name="options"/>; the CPU provider stays ONNX Runtime's implicit last resort.</summary>
    public void Apply(SessionOptions options)
    {
        if (Policy is { } policy) options.SetEpSelectionPolicy(policy);
        if (Providers.Count == 0) return;
        var env = OrtEnv.Instance();
        var devices = Providers.Any(p => p.DeviceIndices.Count > 0) ? env.GetEpDevices() : [];
        foreach (var p in Providers)
        {
            if (p.DeviceIndices.Count > 0)
                options.AppendExecutionProvider(env, p.DeviceIndices.Select(i => devices[i]).ToList(), p.Options);
            else
                AppendByName(options, p);
        }
    }

    // Providers ONNX Runtime does not list among EP devices (CoreML everywhere, others in builds without a device
    // plugin) are appended through their classic entry points.
    private static void AppendByName(SessionOptions options, ProviderAppend p)
    {
        switch (p.EpName)
        {
            case ExecutionProviders.Cpu:
                return;
            case "CUDAExecutionProvider":
                using (var cuda = new OrtCUDAProviderOptions())
                {
                    cuda.UpdateOptions(new Dictionary<string, string>(p.Options));
                    options.AppendExecutionProvider_CUDA(cuda);
                }
                return;
            case "DmlExecutionProvider":
                options.AppendExecutionProvider_DML(p.Options.TryGetValue("device_id", out var id) && int.TryParse(id, out var n) ? n : 0);
                return;
            default:
                string generic = p.EpName switch
                {
                    ExecutionProviders.CoreML => "CoreML",
                    "QNNExecutionProvider" => "QNN",
                    "XnnpackExecutionProvider" => "XNNPACK",
                    "OpenVINOExecutionProvider" => "OpenVINO",
                    _ => p.EpName,
                };
                options.AppendExecutionProvider(generic, new Dictionary<string, string>(p.Options));
                return;
        }
    }
}

/// <summary>A requested device or provider is not in this ONNX Runtime; the message names the option and what exists.</summary>
public sealed class DeviceUnavailableException(string option, string problem) : EdgeDiffusionException($"{option}: {problem}")
{
    public string Option { get; } = option;
}

/// <summary>Turns a <see cref="DeviceRequest"/> into an <see cref="ExecutionPlan"/> against a <see cref="DeviceCatalog"/>.</summary>
public static class DeviceSelector
{
    /// <summary>
    /// cpu: ONNX Runtime's CPU provider. gpu/npu: the EP devices of that type (on Apple platforms, where ONNX Runtime lists
    /// no CoreML device, CoreML with MLComputeUnits=CPUAndGPU / CPUAndNeuralEngine). auto: plain CPU when the CPU is the
    /// only device, else ONNX Runtime's MAX_PERFORMANCE policy (CoreML with ALL on Apple platforms). --ep narrows to one
    /// provider. Missing → <see cref="DeviceUnavailableException"/>, or the CPU and a warning with --fallback cpu.
    /// </summary>
    public static ExecutionPlan Resolve(DeviceRequest request, DeviceCatalog catalog, Action<string>? warn = null)
    {
        warn ??= _ => { };
        var plan = request.Ep is { } ep ? ForProvider(request, ExecutionProviders.Resolve(ep), catalog) : ForDevice(request, catalog);
        if (plan.Problem is { } problem)
        {
            if (!request.FallbackToCpu) throw new DeviceUnavailableException(plan.Option, $"{problem}; available {catalog.Describe()} (or add --fallback cpu)");
            warn($"{plan.Option}: {problem}; continuing on the CPU (--fallback cpu)");
            return ExecutionPlan.Cpu;
        }
        return plan.Plan! with { FallbackToCpu = request.FallbackToCpu, Warn = warn };
    }

    private sealed record Outcome(ExecutionPlan? Plan, string Option, string? Problem);

    private static Outcome ForDevice(DeviceRequest request, DeviceCatalog catalog)
    {
        if (request.EpOptions.Count > 0)
            throw new InvalidArgumentException("--ep-option", "needs --ep, to say which provider the options are for");
        var accelerators = catalog.Devices.Where(d => d.EpName != ExecutionProviders.Cpu && d.DeviceType != DeviceKind.Cpu).ToList();
        bool coreml = catalog.IsMacOS && catalog.HasProvider(ExecutionProviders.CoreML);
        switch (request.Device)
        {
            case DeviceKind.Cpu:
                return new(ExecutionPlan.Cpu, "--device", null);
            case DeviceKind.Auto:
                if (accelerators.Count > 0) return new(new ExecutionPlan { Policy = ExecutionProviderDevicePolicy.MAX_PERFORMANCE }, "--device", null);
                return new(coreml ? CoreMLPlan("ALL") : ExecutionPlan.Cpu, "--device", null);
            default:
                var matching = accelerators.Where(d => d.DeviceType == request.Device).ToList();
                if (matching.Count > 0)
                {
                    // Several providers may drive the same kind of device: the first listed wins, as ONNX Runtime orders them.
                    string epName = matching[0].EpName;
                    return new(new ExecutionPlan { Providers = [new ProviderAppend(epName, matching.Where(d => d.EpName == epName).Select(d => d.Index).ToList(), new Dictionary<string, string>())] }, "--device", null);
                }
                if (coreml) return new(CoreMLPlan(request.Device == DeviceKind.Gpu ? "CPUAndGPU" : "CPUAndNeuralEngine"), "--device", null);
                return new(null, "--device", $"no {request.Device.ToString().ToUpperInvariant()} is available to ONNX Runtime here");
        }
    }

    private static ExecutionPlan CoreMLPlan(string units) => new()
    {
        Providers = [new ProviderAppend(ExecutionProviders.CoreML, [], new Dictionary<string, string> { ["MLComputeUnits"] = units, ["ModelFormat"] = "MLProgram" })],
    };

    private static Outcome ForProvider(DeviceRequest request, string epName, DeviceCatalog catalog)
    {
        if (epName == ExecutionProviders.Cpu)
        {
            if (request.Device is not (DeviceKind.Auto or DeviceKind.Cpu))
                throw new InvalidArgumentException("--device", $"{request.Device.ToString().ToLowerInvariant()} contradicts --ep cpu");
            return new(ExecutionPlan.Cpu, "--ep", null);
        }
        if (!catalog.HasProvider(epName)) return new(null, "--ep", $"{epName} is not in this ONNX Runtime build");
        var options = new Dictionary<string, string>(request.EpOptions);
        var devices = catalog.Devices.Where(d => d.EpName == epName && (request.Device == DeviceKind.Auto || d.DeviceType == request.Device)).Select(d => d.Index).ToList();
        if (epName == ExecutionProviders.CoreML)
        {
            // CoreML has no EP device: --device picks its compute units unless --ep-option MLComputeUnits does.
            string? units = request.Device switch { DeviceKind.Cpu => "CPUOnly", DeviceKind.Gpu => "CPUAndGPU", DeviceKind.Npu => "CPUAndNeuralEngine", _ => null };
            if (units is not null) options.TryAdd("MLComputeUnits", units);
            options.TryAdd("ModelFormat", "MLProgram");
        }
        else if (devices.Count == 0 && request.Device != DeviceKind.Auto && catalog.Devices.Any(d => d.EpName == epName))
            return new(null, "--device", $"{epName} offers no {request.Device.ToString().ToUpperInvariant()} device");
        return new(new ExecutionPlan { Providers = [new ProviderAppend(epName, devices, options)] }, "--ep", null);
    }

    /// <summary>Parses repeated <c>key=value</c> option values.</summary>
    public static IReadOnlyDictionary<string, string> ParseOptions(IEnumerable<string> values, string option = "--ep-option")
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in values)
        {
            int eq = value.IndexOf('=');
            if (eq <= 0) throw new InvalidArgumentException(option, $"'{value}' is not key=value (e.g. MLComputeUnits=CPUAndNeuralEngine)");
            result[value[..eq].Trim()] = value[(eq + 1)..].Trim();
        }
        return result;
    }
}
