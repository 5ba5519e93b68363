using System.Diagnostics;
using System.Text.RegularExpressions;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Tests.Cli;

namespace EdgeDiffusion.Tests.Docs;

/// <summary>
/// The README's Library snippet, built and run as a new user would: the ```csharp block as Program.cs of a fresh console
/// project that references src/EdgeDiffusion/EdgeDiffusion.csproj, run with <c>dotnet run</c> from that project's own folder
/// (not the repository). One restore and build of a one-file project: about 30–60 s.
/// </summary>
[Collection("Console")]
[Trait("Category", "Slow")]
public sealed partial class ReadmeSnippetTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("readme-snippet");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"^## Library\s*$.*?^```csharp\s*$(?<code>.*?)^```\s*$", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex LibrarySnippet();

    [Fact]
    public void TheLibrarySnippetBuildsRunsFromItsOwnFolderAndWritesTheCliPicture()
    {
        string readme = File.ReadAllText(Path.Combine(TestData.RepoRoot, "README.md"));
        var match = LibrarySnippet().Match(readme);
        Assert.True(match.Success, "README.md has no ```csharp block under ## Library");
        string code = match.Groups["code"].Value;
        var saved = Regex.Match(code, @"SavePng\(""(?<file>[^""]+)""");
        Assert.True(saved.Success, "the snippet does not show how to save the picture (result.SavePng(\"file.png\"))");
        string file = saved.Groups["file"].Value;

        string project = Path.Combine(_dir, "ReadmeSnippet");
        Directory.CreateDirectory(project);
        File.WriteAllText(Path.Combine(project, "Program.cs"), code);
        File.WriteAllText(Path.Combine(project, "ReadmeSnippet.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{Path.Combine(TestData.RepoRoot, "src", "EdgeDiffusion", "EdgeDiffusion.csproj")}" />
              </ItemGroup>
            </Project>
            """);

        var (exit, output) = Dotnet(project, "run", "--nologo");
        Assert.True(exit == 0, $"dotnet run of the README snippet failed ({exit}):\n{output}");
        string png = Path.Combine(project, file);
        Assert.True(File.Exists(png), $"the snippet wrote no {file} in its folder:\n{output}");
        var image = RgbaImage.Load(png);
        Assert.Equal((64, 64), (image.Width, image.Height));
        string snippetParameters = PngText.ReadParameters(png)!;
        Assert.Contains("CFG scale: 3,", snippetParameters); // the model's own guidance, as generate uses

        // The same prompt and seed through edgediff generate with its defaults gives the same picture.
        string prompt = snippetParameters.Split('\n')[0];
        long seed = long.Parse(Regex.Match(snippetParameters, @"Seed: (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        string cliPng = Path.Combine(_dir, "cli.png");
        var cli = CliRunner.Run("generate", prompt, "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "-o", cliPng, "-q", "--no-cache");
        Assert.True(cli.ExitCode == 0, cli.Error);
        Assert.Equal(PngText.ReadParameters(cliPng), snippetParameters);
        var cliImage = RgbaImage.Load(cliPng);
        int worst = 0;
        for (int i = 0; i < image.Pixels.Length; i++) worst = Math.Max(worst, Math.Abs(image.Pixels[i] - cliImage.Pixels[i]));
        Assert.True(worst <= 2, $"the snippet's picture differs from edgediff generate's by up to {worst} levels");
    }

    private static (int Exit, string Output) Dotnet(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        // The test host's MSBuild settings must not leak into the user's build.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            return (-1, "timed out after 5 minutes\n" + stdout.Result + stderr.Result);
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
