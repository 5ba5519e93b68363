using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Cli;

/// <summary>Runs a verb's body and turns EdgeDiffusion's typed errors into one line on stderr and a non-zero exit code.</summary>
public static class VerbRunner
{
    /// <summary>Exit code for bad input (files, arguments, and command lines that do not parse: see <see cref="Program.Run"/>).</summary>
    public const int BadInput = 2;

    public static int Run(Func<int> body, TextWriter? error = null)
    {
        error ??= Console.Error;
        try
        {
            return body();
        }
        catch (EdgeDiffusionException e)
        {
            error.WriteLine($"error: {e.Message}");
            return BadInput;
        }
        catch (OperationCanceledException)
        {
            error.WriteLine("cancelled");
            return 130;
        }
    }
}
