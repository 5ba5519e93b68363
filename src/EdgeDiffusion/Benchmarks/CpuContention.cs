using System.Globalization;

namespace EdgeDiffusion.Benchmarks;

/// <summary>
/// How much of the machine's CPU time other processes took while a benchmark ran: the busy time of all CPUs
/// (/proc/stat) minus this process's own (/proc/self/stat), over all CPU time that passed. A build or a test run
/// beside a benchmark lowers its figures without any error; this makes that visible. Linux only.
/// </summary>
public sealed class CpuContention
{
    private readonly (long Busy, long Total) _machine;
    private readonly long _self;

    private CpuContention((long Busy, long Total) machine, long self)
    {
        _machine = machine;
        _self = self;
    }

    /// <summary>Starts counting; null where /proc is not there.</summary>
    public static CpuContention? Start()
    {
        try
        {
            return OperatingSystem.IsLinux() ? new CpuContention(MachineTicks(File.ReadLines("/proc/stat").First()), OwnTicks(File.ReadAllText("/proc/self/stat"))) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>Share (0–1) of all CPU time since <see cref="Start"/> that other processes kept busy.</summary>
    public double OthersShare()
    {
        var machine = MachineTicks(File.ReadLines("/proc/stat").First());
        long self = OwnTicks(File.ReadAllText("/proc/self/stat"));
        return Share(machine.Busy - _machine.Busy, machine.Total - _machine.Total, self - _self);
    }

    /// <summary>(busy − own) ÷ total, clamped to 0–1 (the counters tick at slightly different moments).</summary>
    internal static double Share(long busy, long total, long own) =>
        total <= 0 ? 0 : Math.Clamp((busy - own) / (double)total, 0, 1);

    /// <summary>The "cpu" line of /proc/stat: busy = user + nice + system + irq + softirq + steal; total adds idle and iowait (guest time is already in user).</summary>
    internal static (long Busy, long Total) MachineTicks(string cpuLine)
    {
        var f = cpuLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 8 || f[0] != "cpu") throw new FormatException($"not the cpu line of /proc/stat: '{cpuLine}'");
        long Field(int i) => i < f.Length ? long.Parse(f[i], CultureInfo.InvariantCulture) : 0;
        long busy = Field(1) + Field(2) + Field(3) + Field(6) + Field(7) + Field(8);
        return (busy, busy + Field(4) + Field(5));
    }

    /// <summary>utime + stime of /proc/self/stat (fields 14 and 15; the command name in parentheses may hold spaces).</summary>
    internal static long OwnTicks(string stat)
    {
        var f = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // f[0] is field 3 (state), so field n is f[n - 3].
        return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
    }
}
