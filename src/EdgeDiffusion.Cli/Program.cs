using System.CommandLine;

namespace EdgeDiffusion.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args);

    /// <summary>
    /// Parses and runs one command line. A wrong command line (unknown option or verb, a value of the wrong type, a missing
    /// argument) is one line <c>error: &lt;option&gt;: &lt;problem and fix&gt;</c> on stderr and exit code 2, like any bad input;
    /// <c>--help</c> still prints help and exits 0.
    /// </summary>
    public static int Run(string[] args, TextWriter? error = null)
    {
        var result = BuildRoot().Parse(args);
        if (ParseErrors.Describe(result) is { } problem)
        {
            (error ?? Console.Error).WriteLine($"error: {problem}");
            return VerbRunner.BadInput;
        }
        return result.Invoke();
    }

    /// <summary>The edgediff command tree: one thin verb per library capability, each defined in its own file.</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("edgediff: on-device text-to-image diffusion on ONNX Runtime, with compressed weights and per-layer reports.");
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(CreateModelCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(CompressCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(ProfileCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        return root;
    }
}
