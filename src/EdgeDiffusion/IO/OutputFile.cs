using System.Text;

namespace EdgeDiffusion.IO;

/// <summary>
/// How every output file is written: to a temporary file in the same folder, flushed, then renamed over the target, so
/// a failed or interrupted write never leaves half a file and never destroys the previous one.
/// </summary>
public static class OutputFile
{
    /// <summary>Writes <paramref name="bytes"/>; a bad path or a failed write is an <see cref="InvalidArgumentException"/> naming <paramref name="argument"/>.</summary>
    public static void Write(string path, ReadOnlySpan<byte> bytes, string argument) =>
        Write(path, bytes, (problem, inner) => new InvalidArgumentException(argument, $"{path} {problem}"));

    /// <summary>Writes UTF-8 text without a byte-order mark.</summary>
    public static void WriteText(string path, string text, string argument) => Write(path, Utf8.GetBytes(text), argument);

    /// <summary>Writes <paramref name="bytes"/> (creating the folder); failures become the exception <paramref name="error"/> makes from a one-line problem.</summary>
    public static void Write(string path, ReadOnlySpan<byte> bytes, Func<string, Exception?, Exception> error)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw error($"is not a valid file path ({e.Message.TrimEnd('.')}); pass a path like out/name.ext", e);
        }
        if (Directory.Exists(full)) throw error("is a folder; pass a file name", null);
        string directory = Path.GetDirectoryName(full)!;
        string temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(directory);
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw error($"cannot be written ({Reason(e, temporary, full)}); check that its folder is writable and the disk has space", e);
        }
        finally
        {
            try { if (File.Exists(temporary)) File.Delete(temporary); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// Checks, before any long work, that <paramref name="path"/> can be written as <see cref="Write(string, ReadOnlySpan{byte}, string)"/>
    /// will write it: a valid file path (not a folder) in an existing folder where a file can be created (a probe file is
    /// created and deleted there). Problems are an <see cref="InvalidArgumentException"/> naming <paramref name="argument"/> and the path as given.
    /// </summary>
    public static void CheckWritable(string path, string argument)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new InvalidArgumentException(argument, "empty; give a file name such as out.png");
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new InvalidArgumentException(argument, $"{path} is not a valid file path ({e.Message.TrimEnd('.')}); pass a path like out/name.ext");
        }
        if (Directory.Exists(full)) throw new InvalidArgumentException(argument, $"{path} is a folder; give a file name such as {Path.Combine(path, "out.png")}");
        string? directory = Path.GetDirectoryName(full);
        if (directory is null || !Directory.Exists(directory))
            throw new InvalidArgumentException(argument, $"{path}: folder {directory} does not exist; create it first");
        string probe = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidArgumentException(argument, $"{path} cannot be written ({Reason(e, probe, full)}); choose a file in a writable folder");
        }
        finally
        {
            try { if (File.Exists(probe)) File.Delete(probe); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>Why a write failed, naming the target, never the temporary file it went through.</summary>
    private static string Reason(Exception e, string temporary, string target) => e is UnauthorizedAccessException
        ? $"permission denied in {Path.GetDirectoryName(target)}"
        : e.Message.Replace(temporary, target, StringComparison.Ordinal).TrimEnd('.');

    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);
}
