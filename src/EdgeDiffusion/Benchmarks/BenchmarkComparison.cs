using System.Globalization;
using System.Text;

namespace EdgeDiffusion.Benchmarks;

/// <summary>
/// Several compression forms of one architecture measured in one process, each against the float32 run made first in
/// that process: speed ratios from different days or hosts mean nothing on machines whose peak moves by 2×.
/// </summary>
public static class BenchmarkComparison
{
    /// <summary>Markdown-style table: per form and component, median and peak RSS as multiples of the float32 run's.</summary>
    public static string ToTable(IReadOnlyList<BenchmarkReport> reports)
    {
        if (reports.Count == 0) return "";
        var baseline = reports[0];
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{baseline.Arch} at {baseline.Resolution}², each form against this process's first run ({baseline.Settings})");
        sb.AppendLine();
        sb.AppendLine("| form | component | median | × float32 | peak RSS | × float32 | disk | × float32 |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var report in reports)
        {
            string form = (report.Compression is null ? "float32" : $"{report.Compression} ({report.Decompression})")
                + (report.UnfusedAttention ? ", unfused attention" : "");
            foreach (var c in report.Components)
            {
                var b = baseline.Components.FirstOrDefault(x => x.Name == c.Name);
                string Ratio(double? value, double? reference) => value is double v && reference is double r && r > 0 ? (v / r).ToString("0.00", CultureInfo.InvariantCulture) + "×" : "–";
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {form} | {c.Name} | {c.MedianMs:0} ms | {Ratio(c.MedianMs, b?.MedianMs)} | {Mib(c.PeakRssBytes)} | {Ratio(c.PeakRssBytes, b?.PeakRssBytes)} | {Mib(c.DiskBytes)} | {Ratio(c.DiskBytes, b?.DiskBytes)} |");
            }
            if (report.Generation is { } g && baseline.Generation is { } bg)
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {form} | whole generation | {g.GenerationMs:0} ms | {g.GenerationMs / bg.GenerationMs:0.00}× | {Mib(g.PeakRssBytes)} | {(g.PeakRssBytes is long p && bg.PeakRssBytes is long q ? $"{(double)p / q:0.00}×" : "–")} | | |");
        }
        return sb.ToString();
    }

    private static string Mib(long? bytes) => bytes is long b ? (b / 1048576.0).ToString("0", CultureInfo.InvariantCulture) + " MiB" : "–";
}
