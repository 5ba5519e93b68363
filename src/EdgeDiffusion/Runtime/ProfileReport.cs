namespace EdgeDiffusion.Runtime;

/// <summary>One node's time, averaged over the measured runs.</summary>
public sealed record NodeTiming(
    string Name,
    string OpType,
    string Provider,
    ComputeUnit Unit,
    double MeanUs,
    double SharePercent,
    int Calls,
    IReadOnlyList<string> InputShapes,
    IReadOnlyList<string> OutputShapes)
{
    /// <summary>Operations per run (<see cref="NodeFlops"/>; 0 outside the convolution and matrix-product families), in GFLOP.</summary>
    public double Gflop { get; init; }
}

/// <summary>Time of a group of nodes (an op type, a provider, a compute unit), per measured run, with its operations.</summary>
public sealed record GroupTiming(string Key, int Nodes, double MeanUs, double SharePercent, double Gflop = 0)
{
    /// <summary>Achieved GFLOP/s over the group's kernel time; null where it counts no operations.</summary>
    public double? Gflops => Gflop > 0 && MeanUs > 0 ? Gflop / (MeanUs / 1e6) : null;
}

/// <summary>Where one component's time goes: per node, per compute unit, per provider and per op type.</summary>
public sealed record ProfileReport(
    string Component,
    string ModelPath,
    int SkippedRuns,
    int MeasuredRuns,
    double NodeTimePerRunUs,
    IReadOnlyList<double> RunWallUs,
    IReadOnlyList<NodeTiming> Nodes,
    IReadOnlyList<GroupTiming> ByComputeUnit,
    IReadOnlyList<GroupTiming> ByProvider,
    IReadOnlyList<GroupTiming> ByOpType)
{
    /// <summary>
    /// Aggregates a trace, leaving out its first <paramref name="skipRuns"/> runs (the warm-up: first-run allocation and
    /// kernel selection). Times are per run: the sum over the measured runs divided by their count. Nodes are ordered
    /// slowest first, groups by time.
    /// </summary>
    public static ProfileReport From(ProfileTrace trace, int skipRuns, string component, string modelPath, Func<string, ComputeUnit>? unitOf = null)
    {
        unitOf ??= p => ExecutionProviders.ComputeUnitOf(p);
        skipRuns = Math.Clamp(skipRuns, 0, Math.Max(trace.Runs - 1, 0));
        int measured = Math.Max(trace.Runs - skipRuns, 1);
        var events = trace.Nodes.Where(e => e.Run >= skipRuns).ToList();
        double total = events.Sum(e => (double)e.DurationUs) / measured;
        double Share(double us) => total > 0 ? 100.0 * us / total : 0;

        var nodes = events.GroupBy(e => e.Node, StringComparer.Ordinal).Select(g =>
        {
            var first = g.First();
            double mean = g.Sum(e => (double)e.DurationUs) / measured;
            return new NodeTiming(g.Key, first.OpType, first.Provider, unitOf(first.Provider), mean, Share(mean), g.Count(), first.InputShapes, first.OutputShapes)
            {
                Gflop = g.Sum(NodeFlops.Of) / measured / 1e9,
            };
        }).OrderByDescending(n => n.MeanUs).ThenBy(n => n.Name, StringComparer.Ordinal).ToList();

        List<GroupTiming> By(Func<NodeTiming, string> key) => nodes.GroupBy(key, StringComparer.Ordinal)
            .Select(g => new GroupTiming(g.Key, g.Count(), g.Sum(n => n.MeanUs), Share(g.Sum(n => n.MeanUs)), g.Sum(n => n.Gflop)))
            .OrderByDescending(g => g.MeanUs).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();

        return new ProfileReport(component, modelPath, skipRuns, measured, total,
            trace.RunDurationsUs.Skip(skipRuns).Select(d => (double)d).ToList(),
            nodes, By(n => UnitName(n.Unit)), By(n => n.Provider), By(n => n.OpType));
    }

    public static string UnitName(ComputeUnit unit) => unit switch
    {
        ComputeUnit.Mixed => "CPU/GPU/NPU (Core ML decides)",
        _ => unit.ToString().ToUpperInvariant(),
    };
}

/// <summary>A profile of one component or of a whole generation (one report per component), with what it ran on.</summary>
public sealed record ProfileResult(
    string Model,
    string Mode,
    string Execution,
    int Runs,
    IReadOnlyList<ProfileReport> Components,
    IReadOnlyList<string> Traces);
