using System.Diagnostics;
using EdgeDiffusion.Benchmarks;

namespace EdgeDiffusion.Tests.Benchmarks;

public sealed class CpuContentionTests
{
    [Fact]
    public void ReadsTheKernelCountersAndTheShareFormula()
    {
        // cpu user nice system idle iowait irq softirq steal guest guest_nice
        var (busy, total) = CpuContention.MachineTicks("cpu  100 5 20 800 10 3 2 1 0 0");
        Assert.Equal(100 + 5 + 20 + 3 + 2 + 1, busy);
        Assert.Equal(busy + 800 + 10, total);
        // The command name may hold spaces and parentheses; utime and stime are fields 14 and 15.
        Assert.Equal(70 + 9, CpuContention.OwnTicks("4242 (dotnet (x) y) R 1 2 3 4 5 6 7 8 9 10 70 9 0 0 20 0 30"));
        Assert.Equal((300 - 100) / 1000.0, CpuContention.Share(busy: 300, total: 1000, own: 100));
        Assert.Equal(0, CpuContention.Share(busy: 50, total: 1000, own: 60));
        Assert.Equal(0, CpuContention.Share(busy: 0, total: 0, own: 0));
        Assert.Throws<FormatException>(() => CpuContention.MachineTicks("intr 1 2 3"));
    }

    [Fact]
    public void AnotherBusyProcessShowsAndOurOwnWorkDoesNot()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/bin/sh")) return; // /proc and a shell are Linux facts
        var idle = CpuContention.Start()!;
        var own = Stopwatch.StartNew();
        double sink = 0;
        while (own.ElapsedMilliseconds < 400) sink += Math.Sqrt(own.ElapsedTicks); // this process's own work
        Assert.True(sink > 0);
        double ownShare = idle.OthersShare();

        var busy = CpuContention.Start()!;
        using var spinner = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done"]))!;
        spinner.WaitForExit();
        double othersShare = busy.OthersShare();
        // One spinning core of Environment.ProcessorCount; the test machine's other work can only add to it.
        Assert.True(othersShare > 0.5 / Environment.ProcessorCount, $"{othersShare:P1} with a spinning child on {Environment.ProcessorCount} CPUs");
        Assert.True(othersShare > ownShare, $"{othersShare:P1} vs {ownShare:P1} while only this process worked");
    }
}
