namespace EdgeDiffusion.Tests;

/// <summary>Where the tests find their data: the repository, ../shared beside it, and Debian's ONNX backend test models.</summary>
public static class TestData
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>../shared beside the checkout (CI has it; a user's clone may not).</summary>
    public static string SharedDir => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string ClipTokenizerDir => Path.Combine(SharedDir, "clip-tokenizer");

    /// <summary>Debian's libonnx-testdata (apt-get install libonnx-testdata).</summary>
    public const string OnnxBackendTestData = "/usr/share/libonnx-testdata/data";

    /// <summary>In CI missing data is an error, not a reason to skip.</summary>
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string NewTempDir(string prefix = "edgediff-test")
    {
        string dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "EdgeDiffusion.slnx"))) return dir.FullName;
        throw new InvalidOperationException("EdgeDiffusion.slnx not found above the test binaries");
    }

    /// <summary>The skip reason when <paramref name="path"/> is absent outside CI; null when present or in CI (where the test then fails loudly).</summary>
    internal static string? SkipUnlessPresent(string path, string what) =>
        Directory.Exists(path) || InCi ? null : $"{what} not found at {path}; skipped outside CI";
}

/// <summary>A fact that needs ../shared/clip-tokenizer: skipped with a message in a clone without it, run (and failing if absent) in CI.</summary>
public sealed class ClipTokenizerDataFactAttribute : FactAttribute
{
    public ClipTokenizerDataFactAttribute() => Skip = TestData.SkipUnlessPresent(TestData.ClipTokenizerDir, "../shared/clip-tokenizer (CLIP vocab + reference ids)");
}

/// <summary>A fact that needs Debian's libonnx-testdata: skipped with a message where it is not installed, run in CI.</summary>
public sealed class OnnxBackendDataFactAttribute : FactAttribute
{
    public OnnxBackendDataFactAttribute() => Skip = TestData.SkipUnlessPresent(TestData.OnnxBackendTestData, "libonnx-testdata (apt-get install libonnx-testdata)");
}
