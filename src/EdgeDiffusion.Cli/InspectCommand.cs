using System.CommandLine;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff inspect: what a model or a diffusers folder holds.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("model") { Description = "a .onnx file or a diffusers-style model folder" };
        var json = new Option<bool>("--json") { Description = "print JSON instead of tables" };
        var command = new Command("inspect", "Show opsets, inputs/outputs, op histogram, parameters, largest initializers, external data and compression.")
        {
            path, json,
        };
        command.SetAction(result => VerbRunner.Run(() => 0));
        return command;
    }
}
