namespace EdgeDiffusion.Tests.Cli;

/// <summary>
/// A command line that does not parse gets what every bad input gets: one line "error: &lt;option&gt;: &lt;problem and fix&gt;"
/// on stderr, nothing on stdout and exit code 2; help still prints and exits 0.
/// </summary>
[Collection("Console")]
public sealed class ParseErrorTests
{
    private static void AssertOneErrorLine(CliResult result, params string[] said)
    {
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Out);
        var lines = result.Error.TrimEnd('\n', '\r').Split('\n');
        Assert.True(lines.Length == 1, $"expected one line, got {lines.Length}:\n{result.Error}");
        Assert.StartsWith("error: ", lines[0]);
        foreach (var s in said) Assert.Contains(s, lines[0]);
        Assert.DoesNotContain("System.", lines[0]);
    }

    [Fact]
    public void AValueOfTheWrongTypeNamesTheOptionAndWhatItTakes()
    {
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--seed", "abc"), "error: --seed: \"abc\" is not a whole number ≥ 0");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--steps", "2.5"), "--steps: \"2.5\" is not a whole number");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--guidance", "lots"), "--guidance: \"lots\" is not a number");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--decompress", "later"), "--decompress: \"later\" is not one of auto, jit, load, int8");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--seed"), "--seed: needs a value");
    }

    [Fact]
    public void AnUnknownOptionIsNamedWithASuggestion()
    {
        // Before the fix System.CommandLine took "--stpes" for the prompt and printed 47 lines of help.
        AssertOneErrorLine(CliRunner.Run("generate", "--stpes", "5"), "error: --stpes: unknown option; did you mean --steps? see edgediff generate --help");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--stpes", "5"), "--stpes: unknown option");
        AssertOneErrorLine(CliRunner.Run("generate", "a red circle", "--frobnicate"), "--frobnicate: unknown option; see edgediff generate --help");
        Assert.DoesNotContain("did you mean", CliRunner.Run("generate", "a red circle", "--frobnicate").Error);
    }

    [Fact]
    public void NoVerbOrAnUnknownVerbListsTheVerbs()
    {
        AssertOneErrorLine(CliRunner.Run(), "no verb", "generate", "inspect", "compress", "bench");
        AssertOneErrorLine(CliRunner.Run("genrate", "a red circle"), "genrate: unknown verb", "generate");
    }

    [Fact]
    public void AMissingOrExtraArgumentIsNamed()
    {
        AssertOneErrorLine(CliRunner.Run("generate"), "<prompt>: missing");
        AssertOneErrorLine(CliRunner.Run("inspect"), "<model>: missing");
        AssertOneErrorLine(CliRunner.Run("generate", "a", "red", "circle"), "red: unexpected extra argument", "quotes");
    }

    [Fact]
    public void HelpStillPrintsAndExits0()
    {
        foreach (var args in new[] { new[] { "--help" }, ["generate", "--help"], ["generate", "-h"] })
        {
            var result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 0, result.Error);
            Assert.Contains("Usage:", result.Out);
            Assert.Equal("", result.Error);
        }
    }
}
