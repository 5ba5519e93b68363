using EdgeDiffusion.Onnx;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Tests.Pipelines;

namespace EdgeDiffusion.Tests.Runtime;

[Collection("TinyModels")]
public sealed class ModelProfilerTests(TinyModels models) : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("profile");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TinyShapesUNet => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", "unet", "model.onnx");

    [Fact]
    public void UNetReportMatchesTheOptimizedGraph()
    {
        var settings = SessionSettings.Default with { IntraOpThreads = 1 };
        var result = ModelProfiler.ProfileComponent(TinyShapesUNet, runs: 2, settings);
        var report = Assert.Single(result.Components);
        Assert.Equal("unet", report.Component);
        Assert.Equal((1, 2), (report.SkippedRuns, report.MeasuredRuns));

        // The nodes ONNX Runtime ran are those of the graph it optimized (saved the same way the session cache does).
        string optimized = Path.Combine(_dir, "optimized.onnx");
        SessionFactory.Create(TinyShapesUNet, SessionFactory.Resolve(TinyShapesUNet, settings), optimized).Dispose();
        using var graph = OnnxModel.Load(optimized);
        Assert.Equal(graph.Graph.Node.Count, report.Nodes.Count);
        Assert.Equal(graph.Graph.Node.Select(n => (n.Name, n.OpType)).Order(), report.Nodes.Select(n => (n.Name, n.OpType)).Order());
        Assert.Equal(graph.Graph.Node.GroupBy(n => n.OpType).ToDictionary(g => g.Key, g => g.Count()), report.ByOpType.ToDictionary(g => g.Key, g => g.Nodes));

        Assert.True(report.NodeTimePerRunUs > 0);
        Assert.Equal(100, report.Nodes.Sum(n => n.SharePercent), 6);
        Assert.Equal(100, report.ByOpType.Sum(g => g.SharePercent), 6);
        Assert.All(report.Nodes, n => Assert.Equal((ExecutionProviders.Cpu, ComputeUnit.Cpu), (n.Provider, n.Unit)));
        var unit = Assert.Single(report.ByComputeUnit);
        Assert.Equal(("CPU", report.Nodes.Count), (unit.Key, unit.Nodes));
        Assert.All(report.Nodes, n => Assert.Equal(2, n.Calls));
        Assert.Contains(report.Nodes, n => n.OutputShapes.Contains("float[1,4,8,8]")); // latents at unet/config.json's sample_size
    }

    [Fact]
    public void TracesAreDeletedUnlessKeptAndNeverWrittenToTheWorkingDirectory()
    {
        string unet = Path.Combine(models.Folder(), "unet", "model.onnx");
        var before = Directory.EnumerateFiles(Environment.CurrentDirectory, "onnxruntime_profile_*.json").ToList();
        var result = ModelProfiler.ProfileComponent(unet, runs: 1, SessionSettings.Default);
        Assert.Empty(result.Traces);

        string keep = Path.Combine(_dir, "traces");
        var kept = ModelProfiler.ProfileComponent(unet, runs: 1, SessionSettings.Default, keep);
        string trace = Assert.Single(kept.Traces);
        Assert.StartsWith(keep, trace);
        Assert.StartsWith("edgediff_profile_unet_", Path.GetFileName(trace));
        Assert.Equal(kept.Components[0].Nodes.Count, ProfileReport.From(ProfileTrace.Load(trace), 1, "unet", unet).Nodes.Count);
        Assert.Equal(before, Directory.EnumerateFiles(Environment.CurrentDirectory, "onnxruntime_profile_*.json").ToList());
    }

    [Fact]
    public void GenerationProfilesEveryComponentAndSkipsTheWarmUpGeneration()
    {
        var request = new GenerationRequest { Prompt = "a red circle", Steps = 2, Width = 64, Height = 64, Guidance = 1, Scheduler = "euler" };
        var result = ModelProfiler.ProfileGeneration(models.Folder(), request, runs: 1, SessionSettings.Default with { IntraOpThreads = 1 });
        Assert.Equal(["text_encoder", "unet", "vae_decoder"], result.Components.Select(c => c.Component).Order());
        var unet = result.Components.Single(c => c.Component == "unet");
        Assert.Equal((2, 2), (unet.SkippedRuns, unet.MeasuredRuns)); // one UNet call per step, warm-up generation left out
        Assert.All(result.Components, c => Assert.True(c.NodeTimePerRunUs > 0));
    }

    [Fact]
    public void BadTargetsAreTypedErrors()
    {
        Assert.Throws<InvalidArgumentException>(() => ModelProfiler.ResolveComponent(Path.Combine(_dir, "nowhere"), null));
        Assert.Throws<ModelFolderException>(() => ModelProfiler.ResolveComponent(models.Folder(), "prior"));
        Assert.Throws<InvalidArgumentException>(() => ModelProfiler.ProfileComponent(TinyShapesUNet, runs: 0, SessionSettings.Default));
    }
}
