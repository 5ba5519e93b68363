using System.Text.Json;

namespace EdgeDiffusion.Runtime;

/// <summary>One kernel execution from an ONNX Runtime trace: a node, the run it belongs to, its time and shapes.</summary>
public sealed record NodeEvent(string Node, string OpType, string Provider, long DurationUs, int Run, IReadOnlyList<string> InputShapes, IReadOnlyList<string> OutputShapes);

/// <summary>
/// ONNX Runtime's profiling trace (Chrome trace JSON: an array of events). Session events named <c>model_run</c> give each
/// run's time span; node events (<c>cat: "Node"</c>, name <c>NODE_kernel_time</c>) carry <c>args.op_name</c>,
/// <c>args.provider</c>, <c>args.input_type_shape</c> / <c>output_type_shape</c> and <c>dur</c> in µs. A node event
/// belongs to the run whose span holds its start.
/// </summary>
public sealed class ProfileTrace
{
    private const string KernelSuffix = "_kernel_time";

    private ProfileTrace(IReadOnlyList<NodeEvent> nodes, int runs, IReadOnlyList<long> runDurationsUs)
    {
        Nodes = nodes;
        Runs = runs;
        RunDurationsUs = runDurationsUs;
    }

    public IReadOnlyList<NodeEvent> Nodes { get; }

    /// <summary>Number of <c>model_run</c> events (at least 1 when there are node events).</summary>
    public int Runs { get; }

    /// <summary>Wall time of each run, as ONNX Runtime measured it.</summary>
    public IReadOnlyList<long> RunDurationsUs { get; }

    public static ProfileTrace Load(string path)
    {
        try
        {
            return Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidArgumentException(path, $"not an ONNX Runtime profiling trace ({e.Message})");
        }
    }

    public static ProfileTrace Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var runs = new List<(long Start, long End)>();
        var kernels = new List<(long Ts, JsonElement E)>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            string cat = e.TryGetProperty("cat", out var c) ? c.GetString() ?? "" : "";
            string name = e.TryGetProperty("name", out var n) ? n.GetString() ?? "" : "";
            long ts = e.TryGetProperty("ts", out var t) ? t.GetInt64() : 0;
            long dur = e.TryGetProperty("dur", out var d) ? d.GetInt64() : 0;
            if (cat == "Session" && name == "model_run") runs.Add((ts, ts + dur));
            else if (cat == "Node" && name.EndsWith(KernelSuffix, StringComparison.Ordinal)) kernels.Add((ts, e.Clone()));
        }
        runs.Sort();
        var nodes = new List<NodeEvent>(kernels.Count);
        foreach (var (ts, e) in kernels)
        {
            string name = e.GetProperty("name").GetString()!;
            var args = e.TryGetProperty("args", out var a) ? a : default;
            nodes.Add(new NodeEvent(
                name[..^KernelSuffix.Length],
                Arg(args, "op_name") ?? "?",
                Arg(args, "provider") ?? "?",
                e.TryGetProperty("dur", out var d) ? d.GetInt64() : 0,
                RunOf(runs, ts),
                Shapes(args, "input_type_shape"),
                Shapes(args, "output_type_shape")));
        }
        return new ProfileTrace(nodes, Math.Max(runs.Count, nodes.Count > 0 ? 1 : 0), runs.Select(r => r.End - r.Start).ToList());
    }

    private static int RunOf(List<(long Start, long End)> runs, long ts)
    {
        for (int i = 0; i < runs.Count; i++)
            if (ts >= runs[i].Start && ts <= runs[i].End) return i;
        // Outside every span (a trace without model_run events): the last run that started before it.
        int last = runs.FindLastIndex(r => r.Start <= ts);
        return Math.Max(last, 0);
    }

    private static string? Arg(JsonElement args, string name) =>
        args.ValueKind == JsonValueKind.Object && args.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>[{"float": [1, 4, 8, 8]}, …] → ["float[1,4,8,8]", …].</summary>
    private static IReadOnlyList<string> Shapes(JsonElement args, string name)
    {
        if (args.ValueKind != JsonValueKind.Object || !args.TryGetProperty(name, out var list) || list.ValueKind != JsonValueKind.Array) return [];
        var result = new List<string>();
        foreach (var item in list.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object) continue;
            foreach (var p in item.EnumerateObject())
                result.Add(p.Name + "[" + (p.Value.ValueKind == JsonValueKind.Array ? string.Join(",", p.Value.EnumerateArray().Select(x => x.ToString())) : p.Value.ToString()) + "]");
        }
        return result;
    }
}
