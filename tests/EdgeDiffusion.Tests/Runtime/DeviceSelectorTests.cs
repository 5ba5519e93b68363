using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.Tests.Runtime;

public sealed class DeviceSelectorTests
{
    private static EpDeviceInfo Device(int index, string ep, DeviceKind kind) =>
        new(index, ep, "vendor", kind, "hw", 0x10de, 1, new Dictionary<string, string>(), new Dictionary<string, string>());

    private static readonly DeviceCatalog CpuOnly = new([ExecutionProviders.Cpu], [Device(0, ExecutionProviders.Cpu, DeviceKind.Cpu)], IsMacOS: false);

    private static readonly DeviceCatalog WithGpu = new([ExecutionProviders.Cpu, "CUDAExecutionProvider"],
        [Device(0, ExecutionProviders.Cpu, DeviceKind.Cpu), Device(1, "CUDAExecutionProvider", DeviceKind.Gpu)], IsMacOS: false);

    private static readonly DeviceCatalog Mac = new([ExecutionProviders.CoreML, ExecutionProviders.Cpu], [Device(0, ExecutionProviders.Cpu, DeviceKind.Cpu)], IsMacOS: true);

    [Fact]
    public void ThisMachineListsTheCpu()
    {
        var catalog = DeviceCatalog.Current();
        Assert.Contains(ExecutionProviders.Cpu, catalog.Providers);
        Assert.Contains(catalog.Devices, d => d.EpName == ExecutionProviders.Cpu && d.DeviceType == DeviceKind.Cpu);
    }

    [Fact]
    public void AutoAndCpuArePlainCpuWhenTheCpuIsAllThereIs()
    {
        Assert.True(DeviceSelector.Resolve(new DeviceRequest(), CpuOnly).IsCpuOnly);
        Assert.True(DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Cpu }, WithGpu).IsCpuOnly);
        Assert.True(DeviceSelector.Resolve(new DeviceRequest { Ep = "cpu" }, WithGpu).IsCpuOnly);
    }

    [Fact]
    public void AMissingDeviceNamesTheOptionAndWhatExists()
    {
        var e = Assert.Throws<DeviceUnavailableException>(() => DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Npu }, WithGpu));
        Assert.StartsWith("--device: no NPU", e.Message);
        Assert.Contains("CUDAExecutionProvider", e.Message);
        Assert.Contains("--fallback cpu", e.Message);
        var ep = Assert.Throws<DeviceUnavailableException>(() => DeviceSelector.Resolve(new DeviceRequest { Ep = "qnn" }, CpuOnly));
        Assert.StartsWith("--ep: QNNExecutionProvider is not in this ONNX Runtime build", ep.Message);
        Assert.Throws<InvalidArgumentException>(() => DeviceSelector.Resolve(new DeviceRequest { Ep = "tpu" }, CpuOnly));
    }

    [Fact]
    public void FallbackWarnsAndRunsOnTheCpu()
    {
        var warnings = new List<string>();
        var plan = DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Gpu, FallbackToCpu = true }, CpuOnly, warnings.Add);
        Assert.True(plan.IsCpuOnly);
        Assert.Contains("--device: no GPU", Assert.Single(warnings));
    }

    [Fact]
    public void GpuUsesTheEpDevicesOfThatType()
    {
        var plan = DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Gpu }, WithGpu);
        var append = Assert.Single(plan.Providers);
        Assert.Equal(("CUDAExecutionProvider", 1), (append.EpName, Assert.Single(append.DeviceIndices)));
        Assert.Equal(ExecutionProviderDevicePolicy.MAX_PERFORMANCE, DeviceSelector.Resolve(new DeviceRequest(), WithGpu).Policy);
    }

    [Fact]
    public void NpuOnApplePlatformsAppendsCoreMLWithTheNeuralEngine()
    {
        var plan = DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Npu }, Mac);
        var append = Assert.Single(plan.Providers);
        Assert.Equal(ExecutionProviders.CoreML, append.EpName);
        Assert.Empty(append.DeviceIndices);
        Assert.Equal("CPUAndNeuralEngine", append.Options["MLComputeUnits"]);
        Assert.Equal(ComputeUnit.Npu, ExecutionProviders.ComputeUnitOf(ExecutionProviders.CoreML, append.Options));
        Assert.True(plan.CompilesGraph);

        var explicitUnits = DeviceSelector.Resolve(new DeviceRequest { Ep = "coreml", EpOptions = DeviceSelector.ParseOptions(["MLComputeUnits=CPUAndGPU", "ModelCacheDirectory=/tmp/c"]) }, Mac);
        Assert.Equal("CPUAndGPU", explicitUnits.Providers[0].Options["MLComputeUnits"]);
        Assert.Equal("MLProgram", explicitUnits.Providers[0].Options["ModelFormat"]);
    }

    [Fact]
    public void EpOptionsNeedAnEpAndKeyValueForm()
    {
        Assert.Throws<InvalidArgumentException>(() => DeviceSelector.ParseOptions(["MLComputeUnits"]));
        var e = Assert.Throws<InvalidArgumentException>(() => DeviceSelector.Resolve(new DeviceRequest { EpOptions = new Dictionary<string, string> { ["a"] = "b" } }, CpuOnly));
        Assert.Equal("--ep-option", e.Argument);
    }

    [Fact]
    public void TheCacheKeyIncludesTheExecutionPlan()
    {
        string unet = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "unet", "model.onnx");
        var cpu = SessionSettings.Default;
        var coreml = cpu with { Execution = DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Npu }, Mac) };
        var gpu = cpu with { Execution = DeviceSelector.Resolve(new DeviceRequest { Device = DeviceKind.Gpu }, WithGpu) };
        var keys = new[] { cpu, coreml, gpu }.Select(s => SessionCache.Key(unet, s)).ToList();
        Assert.Equal(3, keys.Distinct().Count());
    }

    [Fact]
    public void AProviderFailingAtSessionCreationFallsBackOnlyWhenAsked()
    {
        // XNNPACK is not in the CPU package: appending it fails while the session is made, as a broken driver would.
        string unet = Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "unet", "model.onnx");
        var warnings = new List<string>();
        var failing = new ExecutionPlan { Providers = [new ProviderAppend("XnnpackExecutionProvider", [], new Dictionary<string, string>())], Warn = warnings.Add };
        Assert.Throws<EdgeDiffusion.Onnx.OnnxFormatException>(() => SessionFactory.Create(unet, SessionSettings.Default with { Execution = failing }));
        using var session = SessionFactory.Create(unet, SessionSettings.Default with { Execution = failing with { FallbackToCpu = true } });
        Assert.NotEmpty(session.InputMetadata);
        Assert.Contains("continuing on the CPU", Assert.Single(warnings));
    }
}
