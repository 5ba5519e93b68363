using System.Globalization;
using System.Net;
using System.Text;

namespace EdgeDiffusion.Runtime;

/// <summary>
/// A self-contained HTML page for a <see cref="ProfileResult"/>: per component, PNG bar charts (time by op type, time by
/// compute unit; drawn with ScottPlot, embedded as data URIs) and tables (compute units, providers, op types, slowest nodes).
/// </summary>
public static class ProfileHtmlReport
{
    public static string Render(ProfileResult result, int topNodes = 50, CoreMLPrediction? prediction = null)
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>edgediff profile</title><style>")
            .Append("body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}")
            .Append("td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.n{text-align:right}img{max-width:100%}")
            .Append("</style></head><body>\n");
        html.Append($"<h1>Profile of {E(result.Model)}</h1>\n");
        if (result.Components.Count > 0) html.Append($"<p>{E(result.Mode)}, execution: {E(result.Execution)}, {result.Runs} measured run(s) after one warm-up.</p>\n");
        foreach (var r in result.Components)
        {
            html.Append($"<h2>{E(r.Component)}</h2>\n<p>{E(r.ModelPath)}: {r.Nodes.Count} nodes, {Ms(r.NodeTimePerRunUs)} ms of kernel time per run ({r.MeasuredRuns} run(s) measured, {r.SkippedRuns} skipped).</p>\n");
            html.Append(Image(Chart(r.ByOpType.Take(15).ToList(), $"{r.Component}: time by op type (ms per run)"), "time by op type"));
            html.Append(Image(Chart(r.ByComputeUnit, $"{r.Component}: time by compute unit (ms per run)"), "time by compute unit"));
            html.Append(GroupTable("compute unit", r.ByComputeUnit)).Append(GroupTable("provider", r.ByProvider)).Append(GroupTable("op type", r.ByOpType));
            html.Append($"<h3>Slowest {Math.Min(topNodes, r.Nodes.Count)} nodes</h3>\n<table><tr><th>node</th><th>op</th><th>provider</th><th>unit</th><th>ms</th><th>%</th><th>inputs</th><th>outputs</th></tr>\n");
            foreach (var n in r.Nodes.Take(topNodes))
                html.Append($"<tr><td>{E(n.Name)}</td><td>{E(n.OpType)}</td><td>{E(n.Provider)}</td><td>{E(ProfileReport.UnitName(n.Unit))}</td><td class=n>{Ms(n.MeanUs)}</td><td class=n>{Pct(n.SharePercent)}</td><td>{E(string.Join(" ", n.InputShapes))}</td><td>{E(string.Join(" ", n.OutputShapes))}</td></tr>\n");
            html.Append("</table>\n");
        }
        if (prediction is not null) html.Append(PredictionSection(prediction));
        html.Append("</body></html>\n");
        return html.ToString();
    }

    /// <summary>Writes the page to a temporary file beside <paramref name="path"/> and renames it into place.</summary>
    public static void Write(string path, ProfileResult result, int topNodes = 50, CoreMLPrediction? prediction = null)
    {
        string full = Path.GetFullPath(path);
        if (Path.GetDirectoryName(full) is not { } dir || !Directory.Exists(dir)) throw new InvalidArgumentException("--html", $"folder of {path} does not exist; create it first");
        IO.OutputFile.WriteText(path, Render(result, topNodes, prediction), "--html");
    }

    internal static string PredictionSection(CoreMLPrediction p)
    {
        var html = new StringBuilder();
        html.Append($"<h2>Prediction: CoreML (MLProgram) placement</h2>\n<p>A static prediction from ONNX Runtime's documented CoreML operator support, not a measurement: {p.SupportedNodes} of {p.Nodes.Count} nodes supported, {p.Partitions.Count} partition(s).</p>\n");
        html.Append("<table><tr><th>op</th><th>nodes falling back</th><th>reason</th></tr>\n");
        foreach (var g in p.Nodes.Where(n => !n.Supported).GroupBy(n => (n.OpType, n.Reason)).OrderByDescending(g => g.Count()))
            html.Append($"<tr><td>{E(g.Key.OpType)}</td><td class=n>{g.Count()}</td><td>{E(g.Key.Reason ?? "")}</td></tr>\n");
        html.Append("</table>\n");
        return html.ToString();
    }

    private static string GroupTable(string title, IReadOnlyList<GroupTiming> groups)
    {
        var html = new StringBuilder($"<table><tr><th>{E(title)}</th><th>nodes</th><th>ms per run</th><th>%</th><th>GFLOP/s</th></tr>\n");
        foreach (var g in groups)
            html.Append($"<tr><td>{E(g.Key)}</td><td class=n>{g.Nodes}</td><td class=n>{Ms(g.MeanUs)}</td><td class=n>{Pct(g.SharePercent)}</td><td class=n>{(g.Gflops is double f ? f.ToString("0.0", CultureInfo.InvariantCulture) : "")}</td></tr>\n");
        return html.Append("</table>\n").ToString();
    }

    /// <summary>A horizontal bar chart of the groups' mean time, largest at the top, as PNG bytes.</summary>
    public static byte[] Chart(IReadOnlyList<GroupTiming> groups, string title) =>
        Imaging.BarChart.Png([.. groups.Select(g => g.Key)], [.. groups.Select(g => g.MeanUs / 1000.0)], title, "ms per run");

    private static string Image(byte[] png, string alt) => $"<p><img alt=\"{E(alt)}\" src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"></p>\n";

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private static string Ms(double us) => (us / 1000.0).ToString("0.000", CultureInfo.InvariantCulture);

    private static string Pct(double p) => p.ToString("0.0", CultureInfo.InvariantCulture);
}
