using EdgeDiffusion.Cli;

namespace EdgeDiffusion.Tests.Cli;

/// <summary>Tests that swap Console.Out/Error share this collection so they never run at the same time.</summary>
[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

public sealed record CliResult(int ExitCode, string Out, string Error);

/// <summary>Runs edgediff in-process with its console output captured.</summary>
public static class CliRunner
{
    public static CliResult Run(params string[] args)
    {
        var (oldOut, oldError) = (Console.Out, Console.Error);
        var (output, error) = (new StringWriter(), new StringWriter());
        try
        {
            Console.SetOut(output);
            Console.SetError(error);
            int code = Program.Run(args);
            return new CliResult(code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }
}
