namespace EdgeDiffusion.Bench;

/// <summary>Resident-set figures of this process from /proc (Linux): current and peak, with the peak resettable.</summary>
public static class ProcessMemory
{
    public static long CurrentRssBytes() => ReadStatusKb("VmRSS:") * 1024;

    public static long PeakRssBytes() => ReadStatusKb("VmHWM:") * 1024;

    /// <summary>Resets the kernel's peak-RSS mark to the current RSS (writing 5 to clear_refs), so a phase can be measured alone.</summary>
    public static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static long ReadStatusKb(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }
}
