using System.CommandLine;
using EdgeDiffusion.Serving;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff serve: the local HTTP server (EdgeDiffusion.Serving) until Ctrl+C.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = ModelOption.Create("the model folder to serve");
        var models = new Option<string?>("--models") { Description = "serve every model folder under this folder, each by its name" };
        var host = new Option<string>("--host") { Description = "the address to listen on (loopback by default; 0.0.0.0 opens it to the network)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "the port (0: any free port)", DefaultValueFactory = _ => 7860 };
        var maxQueue = new Option<int>("--max-queue") { Description = "requests that may wait per model while one generates; more are answered 429", DefaultValueFactory = _ => 8 };
        var command = new Command("serve", "Serve models over HTTP: OpenAI /v1/images/generations, AUTOMATIC1111 /sdapi/v1/txt2img, jobs with progress events, /v1/models, /health.")
        {
            model, models, host, port, maxQueue,
        };
        command.SetAction(result =>
        {
            TextWriter output = result.InvocationConfiguration.Output;
            TextWriter error = result.InvocationConfiguration.Error;
            return VerbRunner.Run(() =>
            {
                string? modelsRoot = result.GetValue(models);
                var options = new ServerOptions
                {
                    Model = modelsRoot is null ? ModelOption.Resolve(result.GetValue(model)) : result.GetValue(model),
                    ModelsRoot = modelsRoot,
                    Host = result.GetValue(host)!,
                    Port = result.GetValue(port),
                    MaxQueue = result.GetValue(maxQueue),
                };
                var server = EdgeDiffusionServer.StartAsync(options).GetAwaiter().GetResult();
                try
                {
                    if (!System.Net.IPAddress.TryParse(options.Host, out var ip) || !System.Net.IPAddress.IsLoopback(ip))
                        if (options.Host != "localhost")
                            error.WriteLine($"warning: listening on {options.Host}: other machines can reach this server; it has no authentication");
                    output.WriteLine($"edgediff serve: {server.Address} ({string.Join(", ", server.Models)}); Ctrl+C stops");
                    server.WaitForShutdownAsync().GetAwaiter().GetResult();
                }
                finally
                {
                    server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
                return 0;
            }, error);
        });
        return command;
    }
}
