using System.CommandLine;
using System.Globalization;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Pipelines;
using Spectre.Console;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff inspect: what a model or a diffusers folder holds.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("model") { Description = "a .onnx file or a diffusers-style model folder" };
        var json = new Option<bool>("--json") { Description = "print JSON instead of tables" };
        var command = new Command("inspect", "Show opsets, inputs/outputs, op histogram, parameters (for a compressed model: stored values by dtype and the parameter count once decompressed), largest initializers, external data and compression.")
        {
            path, json,
        };
        command.SetAction(result => VerbRunner.Run(() =>
        {
            string target = result.GetValue(path)!;
            bool asJson = result.GetValue(json);
            if (Directory.Exists(target))
            {
                var folder = ModelFolderInspection.Inspect(target);
                if (asJson) Console.Out.WriteLine(CliJson.Serialize(folder));
                else RenderFolder(folder);
            }
            else
            {
                var model = ModelInspector.Inspect(target);
                if (asJson) Console.Out.WriteLine(CliJson.Serialize(model));
                else Render(model, null);
            }
            return 0;
        }));
        return command;
    }

    // Bound to the current Console.Out on each use: AnsiConsole.Console keeps the writer it first saw.
    private static IAnsiConsole Out => CliConsole.Current();

    private static void RenderFolder(ModelFolderInspection folder)
    {
        Out.MarkupLine($"[bold]{Markup.Escape(folder.Root)}[/]: {folder.Components.Count} components");
        foreach (var c in folder.Components) Render(c.Model, c.Component);
        var totals = new Table().Title("Totals").AddColumns("component", "parameters", "stored values", "weight bytes", "nodes", "compressed");
        foreach (var c in folder.Components)
            totals.AddRow(c.Component, Count(c.Model.ParameterCount), Count(c.Model.StoredValueCount), Bytes(c.Model.ParameterBytes),
                c.Model.NodeCount.ToString(CultureInfo.InvariantCulture), c.Model.Compression.Compressed ? "yes" : "no");
        totals.AddRow("[bold]total[/]", Count(folder.ParameterCount), Count(folder.StoredValueCount), Bytes(folder.ParameterBytes), "", $"disk {Bytes(folder.DiskBytes)}");
        Out.Write(totals);
    }

    private static void Render(ModelInspection m, string? component)
    {
        Out.Write(new Rule(Markup.Escape(component is null ? m.Path : $"{component}  ({m.Path})")).LeftJustified());
        Out.MarkupLine($"ir_version {m.IrVersion}, opsets {Markup.Escape(string.Join(", ", m.Opsets))}, producer {Markup.Escape(m.Producer)}, file {Bytes(m.FileBytes)}");
        var io = new Table().AddColumns("", "name", "type", "shape");
        foreach (var v in m.Inputs) io.AddRow("input", Markup.Escape(v.Name), v.Type, Markup.Escape("[" + string.Join(", ", v.Shape) + "]"));
        foreach (var v in m.Outputs) io.AddRow("output", Markup.Escape(v.Name), v.Type, Markup.Escape("[" + string.Join(", ", v.Shape) + "]"));
        Out.Write(io);
        Out.MarkupLine($"{m.NodeCount} nodes: " + Markup.Escape(string.Join(", ", m.OpHistogram.Select(p => $"{p.Key} {p.Value}"))));
        string byDtype = Markup.Escape(string.Join(", ", m.ByDtype.Select(d => $"{d.Dtype} {Count(d.Values)} ({Bytes(d.Bytes)})")));
        if (!m.Compression.Compressed)
            Out.MarkupLine($"{Count(m.ParameterCount)} parameters, {Bytes(m.ParameterBytes)}: {byDtype}");
        else
        {
            // Compressed: what is stored (codes, palettes, scales …) is not the parameter count; that is the rebuilt weights'.
            Out.MarkupLine($"{Count(m.StoredValueCount)} stored values, {Bytes(m.ParameterBytes)}: {byDtype}");
            Out.MarkupLine(m.ParameterCount is long p
                ? $"{Count(p)} parameters once decompressed"
                : "parameters once decompressed: not known from the graph (a decompressed weight's shape could not be worked out)");
        }
        if (m.LargestInitializers.Count > 0)
        {
            var largest = new Table().Title("largest initializers").AddColumns("name", "dtype", "shape", "bytes", "stored");
            foreach (var t in m.LargestInitializers)
                largest.AddRow(Markup.Escape(t.Name), t.Dtype, Markup.Escape("[" + string.Join(", ", t.Shape) + "]"), Bytes(t.Bytes), t.External ? "external" : "inline");
            Out.Write(largest);
        }
        foreach (var f in m.ExternalDataFiles)
            Out.MarkupLine($"external data: {Markup.Escape(f.Location)} ({Bytes(f.Bytes)}, {f.Tensors} tensors)");
        var c = m.Compression;
        Out.MarkupLine(c.Compressed
            ? $"compressed weights: {c.DequantizeLinear} DequantizeLinear, {c.LookupTables} look-up tables, {c.MatMulNBits} MatMulNBits, {c.ScatteredSparse} sparse scatters ({Bytes(c.CompressedWeightBytes)} stored)"
            : "compressed weights: none");
    }

    internal static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    internal static string Count(long? n) => n is long v ? Count(v) : "?";

    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{n / 1024.0:0.0} KiB",
        _ => $"{n} B",
    };
}
