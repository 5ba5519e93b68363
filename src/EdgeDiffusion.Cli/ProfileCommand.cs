using System.CommandLine;
using System.Globalization;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using Spectre.Console;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff profile: where a component's (or a generation's) time goes, per node, compute unit and op type.</summary>
public static class ProfileCommand
{
    public static Command Create()
    {
        var target = new Argument<string>("model") { Description = "a diffusers-style model folder or one .onnx file" };
        var component = new Option<string?>("--component", "-c") { Description = "the folder's component to profile (default: unet)" };
        var runs = new Option<int?>("--runs") { Description = "measured runs after one warm-up run (default 5; with --generation: generations, default 1)" };
        var generation = new Option<bool>("--generation") { Description = "profile one whole generation through the pipeline instead of one component" };
        var prompt = new Option<string>("--prompt") { Description = "with --generation: the prompt", DefaultValueFactory = _ => "a red circle on a blue background" };
        var steps = new Option<int>("--steps") { Description = "with --generation: denoising steps (Stable Cascade: prior steps; the decoder runs half as many)", DefaultValueFactory = _ => 4 };
        var top = new Option<int>("--top") { Description = "nodes listed in the table (slowest first)", DefaultValueFactory = _ => 15 };
        var json = new Option<bool>("--json") { Description = "print JSON instead of tables" };
        var html = new Option<string?>("--html") { Description = "also write a self-contained HTML report (tables and PNG charts) to this file" };
        var keepTrace = new Option<string?>("--keep-trace")
        {
            Description = "keep ONNX Runtime's JSON trace(s), in the given folder or the current one (deleted otherwise)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per operator (0: one per core)", DefaultValueFactory = _ => 0 };
        var predict = new Option<string?>("--target") { Description = "coreml: predict, without running, which nodes the CoreML EP (ML Program) would take, and the partitions" };
        var staticShapes = new Option<bool>("--require-static-shapes") { Description = "with --target coreml: predict as with RequireStaticInputShapes=1" };
        var command = new Command("profile", "Profile a model with ONNX Runtime: time per node, per compute unit and per op type (or predict CoreML placement with --target coreml).")
        {
            target, component, runs, generation, prompt, steps, top, json, html, keepTrace, threads, predict, staticShapes,
        };
        var devices = RuntimeOptions.AddDeviceOptions(command);
        command.SetAction((result, cancellation) => Task.FromResult(VerbRunner.Run(() =>
        {
            string model = result.GetValue(target)!;
            string? htmlPath = result.GetValue(html);
            if (htmlPath is not null && Path.GetDirectoryName(Path.GetFullPath(htmlPath)) is { } dir && !Directory.Exists(dir))
                throw new InvalidArgumentException("--html", $"folder {dir} does not exist; create it first");
            if (result.GetValue(predict) is { } t)
            {
                if (!t.Equals("coreml", StringComparison.OrdinalIgnoreCase)) throw new InvalidArgumentException("--target", $"'{t}'; the only target with a static preview is coreml");
                if (result.GetValue(component) is null && CascadeFolder.IsCascade(model))
                {
                    // Stable Cascade: one preview per stage (the seed's per-stage placement table).
                    var stages = ModelFolder.Open(model).Components.Select(c => CoreMLPreview.Predict(c.Value, result.GetValue(staticShapes))).ToList();
                    if (result.GetValue(json)) Console.Out.WriteLine(CliJson.Serialize(stages));
                    else foreach (var stage in stages) RenderPrediction(stage);
                    return 0;
                }
                var prediction = CoreMLPreview.Predict(ModelProfiler.ResolveComponent(model, result.GetValue(component)), result.GetValue(staticShapes));
                if (result.GetValue(json)) Console.Out.WriteLine(CliJson.Serialize(prediction));
                else RenderPrediction(prediction);
                if (htmlPath is not null) ProfileHtmlReport.Write(htmlPath, new ProfileResult(model, "prediction", "coreml (not run)", 0, [], []), prediction: prediction);
                return 0;
            }
            var settings = RuntimeOptions.Settings(result.GetValue(threads), noCache: true, cacheDir: null, execution: devices.Resolve(result, Console.Error));
            // --keep-trace alone keeps the traces in the current folder.
            string? traceFolder = result.GetResult(keepTrace) is null ? null : result.GetValue(keepTrace) ?? ".";
            ProfileResult profile;
            if (result.GetValue(generation))
            {
                if (result.GetValue(component) is not null) throw new InvalidArgumentException("--component", "does not combine with --generation, which profiles every component");
                if (CascadeFolder.IsCascade(model))
                {
                    // Stable Cascade: --steps prior steps, half as many decoder steps (the usual 20 : 10), both stages profiled.
                    int priorSteps = result.GetValue(steps);
                    var cascade = new CascadeRequest { Prompt = result.GetValue(prompt)!, PriorSteps = priorSteps, DecoderSteps = Math.Max(1, priorSteps / 2), Seed = 42 };
                    profile = ModelProfiler.ProfileCascadeGeneration(model, cascade, result.GetValue(runs) ?? 1, settings, traceFolder);
                }
                else
                {
                    var size = StableDiffusionPipeline.ConfiguredSize(model) ?? (512, 512);
                    var request = new GenerationRequest { Prompt = result.GetValue(prompt)!, Steps = result.GetValue(steps), Width = size.Width, Height = size.Height, Seed = 42 };
                    profile = ModelProfiler.ProfileGeneration(model, request, result.GetValue(runs) ?? 1, settings, traceFolder);
                }
            }
            else
            {
                profile = ModelProfiler.ProfileComponent(ModelProfiler.ResolveComponent(model, result.GetValue(component)), result.GetValue(runs) ?? 5, settings, traceFolder);
            }
            if (result.GetValue(json)) Console.Out.WriteLine(CliJson.Serialize(profile));
            else Render(profile, result.GetValue(top));
            if (htmlPath is not null)
            {
                ProfileHtmlReport.Write(htmlPath, profile, Math.Max(result.GetValue(top), 50));
                Console.Error.WriteLine($"wrote {htmlPath}");
            }
            foreach (var trace in profile.Traces) Console.Error.WriteLine($"trace: {trace}");
            return 0;
        })));
        return command;
    }

    // Bound to the current Console.Out on each use: AnsiConsole.Console keeps the writer it first saw.
    private static IAnsiConsole Out => CliConsole.Current();

    private static void Render(ProfileResult profile, int top)
    {
        Out.MarkupLine($"[bold]{Markup.Escape(profile.Model)}[/]: {profile.Mode}, execution {Markup.Escape(profile.Execution)}, {profile.Runs} measured run(s) after a warm-up");
        foreach (var r in profile.Components)
        {
            Out.Write(new Rule(Markup.Escape($"{r.Component}  ({r.ModelPath})")).LeftJustified());
            Out.MarkupLine($"{r.Nodes.Count} nodes, {Ms(r.NodeTimePerRunUs)} ms kernel time per run ({r.MeasuredRuns} runs measured, {r.SkippedRuns} skipped)");
            var nodes = new Table().Title($"slowest {Math.Min(top, r.Nodes.Count)} nodes").AddColumns("node", "op", "provider", "unit", "ms", "%", "output");
            foreach (var n in r.Nodes.Take(top))
                nodes.AddRow(Markup.Escape(n.Name), Markup.Escape(n.OpType), Markup.Escape(n.Provider), ProfileReport.UnitName(n.Unit), Ms(n.MeanUs), Pct(n.SharePercent), Markup.Escape(string.Join(" ", n.OutputShapes)));
            Out.Write(nodes);
            Out.Write(Groups("compute unit", r.ByComputeUnit));
            Out.Write(Groups("provider", r.ByProvider));
            Out.Write(Groups("op type", r.ByOpType));
        }
    }

    private static Table Groups(string title, IReadOnlyList<GroupTiming> groups)
    {
        var table = new Table().Title($"by {title}").AddColumns(title, "nodes", "ms", "%", "GFLOP/s");
        foreach (var g in groups)
            table.AddRow(Markup.Escape(g.Key), g.Nodes.ToString(CultureInfo.InvariantCulture), Ms(g.MeanUs), Pct(g.SharePercent), Gflops(g.Gflops));
        return table;
    }

    private static void RenderPrediction(CoreMLPrediction p)
    {
        Out.MarkupLine($"[bold]prediction[/] (static, from ONNX Runtime's documented CoreML ML Program support; nothing was run): {Markup.Escape(p.Source)}");
        Out.MarkupLine($"{p.SupportedNodes} of {p.Nodes.Count} nodes to CoreML in {p.Partitions.Count} partition(s); {p.Nodes.Count - p.SupportedNodes} fall back to the CPU provider");
        var partitions = new Table().Title("partitions").AddColumns("#", "nodes", "first", "last");
        for (int i = 0; i < p.Partitions.Count; i++)
            partitions.AddRow(i.ToString(CultureInfo.InvariantCulture), p.Partitions[i].Count.ToString(CultureInfo.InvariantCulture), Markup.Escape(p.Partitions[i][0]), Markup.Escape(p.Partitions[i][^1]));
        Out.Write(partitions);
        var fallbacks = new Table().Title("fallbacks").AddColumns("op", "nodes", "reason");
        foreach (var g in p.Nodes.Where(n => !n.Supported).GroupBy(n => (n.OpType, n.Reason)).OrderByDescending(g => g.Count()))
            fallbacks.AddRow(Markup.Escape(g.Key.OpType), g.Count().ToString(CultureInfo.InvariantCulture), Markup.Escape(g.Key.Reason ?? ""));
        Out.Write(fallbacks);
        Out.MarkupLine($"rules: {Markup.Escape(CoreMLPrediction.RulesSource)}");
    }

    private static string Ms(double us) => (us / 1000.0).ToString("0.000", CultureInfo.InvariantCulture);

    private static string Pct(double p) => p.ToString("0.0", CultureInfo.InvariantCulture);

    private static string Gflops(double? g) => g is double v ? v.ToString("0.0", CultureInfo.InvariantCulture) : "";
}
