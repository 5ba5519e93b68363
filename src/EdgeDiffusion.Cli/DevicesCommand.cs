using System.CommandLine;
using EdgeDiffusion.Runtime;
using Spectre.Console;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff devices: the execution providers in this ONNX Runtime and the hardware devices it discovered.</summary>
public static class DevicesCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "print JSON instead of tables" };
        var command = new Command("devices", "List ONNX Runtime's execution providers and the hardware devices (EP devices) they can use.") { json };
        command.SetAction(result => VerbRunner.Run(() =>
        {
            var catalog = DeviceCatalog.Current();
            if (result.GetValue(json))
            {
                Console.Out.WriteLine(CliJson.Serialize(new
                {
                    OnnxRuntime = Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString(),
                    catalog.Providers,
                    Devices = catalog.Devices.Select(d => new
                    {
                        Ep = d.EpName,
                        d.EpVendor,
                        DeviceType = d.DeviceType.ToString().ToUpperInvariant(),
                        Vendor = d.HardwareVendor,
                        d.VendorId,
                        d.DeviceId,
                        Metadata = d.HardwareMetadata,
                        d.EpMetadata,
                    }),
                    CoremlAppendedExplicitly = catalog.IsMacOS && catalog.HasProvider(ExecutionProviders.CoreML),
                }));
                return 0;
            }
            var console = CliConsole.Current();
            console.MarkupLine($"ONNX Runtime {Markup.Escape(Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString())}");
            var providers = new Table().Title("execution providers").AddColumns("provider", "--ep", "EP devices");
            foreach (var p in catalog.Providers)
            {
                string shortName = ExecutionProviders.ShortNames.FirstOrDefault(s => s.Value == p).Key ?? "";
                int devices = catalog.Devices.Count(d => d.EpName == p);
                providers.AddRow(Markup.Escape(p), shortName, p == ExecutionProviders.CoreML ? "none (appended explicitly)" : devices.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            console.Write(providers);
            var table = new Table().Title("hardware devices (EP devices)").AddColumns("#", "provider", "type", "vendor", "vendor id", "device id", "metadata");
            foreach (var d in catalog.Devices)
                table.AddRow(d.Index.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape($"{d.EpName} ({d.EpVendor})"), d.DeviceType.ToString().ToUpperInvariant(),
                    Markup.Escape(d.HardwareVendor), $"0x{d.VendorId:x4}", $"0x{d.DeviceId:x4}",
                    Markup.Escape(string.Join(", ", d.HardwareMetadata.Concat(d.EpMetadata).Select(kv => $"{kv.Key}={kv.Value}"))));
            console.Write(table);
            return 0;
        }));
        return command;
    }
}

/// <summary>A Spectre console over whatever Console.Out is now (tests and callers may redirect it between verbs).</summary>
internal static class CliConsole
{
    public static IAnsiConsole Current() => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
}
