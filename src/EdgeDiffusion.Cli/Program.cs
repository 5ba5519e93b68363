using System.CommandLine;

namespace EdgeDiffusion.Cli;

public static class Program
{
    public static int Main(string[] args) => BuildRoot().Parse(args).Invoke();

    /// <summary>The edgediff command tree: one thin verb per library capability, each defined in its own file.</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("edgediff: on-device text-to-image diffusion on ONNX Runtime, with compressed weights and per-layer reports.");
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(CreateModelCommand.Create());
        root.Subcommands.Add(CompressCommand.Create());
        root.Subcommands.Add(DevicesCommand.Create());
        root.Subcommands.Add(ProfileCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        return root;
    }
}
