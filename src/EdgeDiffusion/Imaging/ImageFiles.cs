namespace EdgeDiffusion.Imaging;

/// <summary>
/// Image files in and out: reading with typed errors, and writing through a temporary file in the same folder that is
/// renamed into place when complete.
/// </summary>
internal static class ImageFiles
{
    /// <summary>The file's bytes; a folder, a missing or an unreadable file is an <see cref="ImageException"/> saying what to pass instead.</summary>
    public static byte[] ReadAllBytes(string path, string expected)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            throw new ImageException(path, $"is a folder; pass {expected}");
        if (!File.Exists(path))
            throw new ImageException(path, "file not found; check the path");
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageException(path, $"cannot be read ({e.Message.TrimEnd('.')}); check that the file is readable", e);
        }
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> to <paramref name="path"/> (creating its folder), replacing any file there only once the
    /// new content is fully on disk; readers never see a half-written file. Failures are <see cref="ImageException"/>s naming the path.
    /// </summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes) =>
        IO.OutputFile.Write(path, bytes, (problem, inner) => new ImageException(path, problem, inner));
}
