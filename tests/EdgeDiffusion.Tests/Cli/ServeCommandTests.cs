namespace EdgeDiffusion.Tests.Cli;

/// <summary>edgediff serve refuses bad options in one line, exit 2, before listening (the server itself: Serving/ServerTests).</summary>
[Collection("Console")]
public sealed class ServeCommandTests
{
    [Theory]
    [InlineData("--host", "example.com", "error: --host: \"example.com\" is not an IP address")]
    [InlineData("--models", "/nonexistent-models-root", "error: --models: /nonexistent-models-root: folder not found")]
    [InlineData("--max-queue", "-1", "error: --max-queue: -1 is negative")]
    [InlineData("--port", "70000", "error: --port: 70000 is out of range")]
    public void BadOptionsAreOneLineAndExit2(string option, string value, string expected)
    {
        var result = option == "--port" ? CliRunner.Run("serve", option, value) : CliRunner.Run("serve", option, value, "--port", "0");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith(expected, result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
    }

    [Fact]
    public void HelpListsTheOptions()
    {
        var result = CliRunner.Run("serve", "--help");
        Assert.Equal(0, result.ExitCode);
        foreach (var option in new[] { "--model", "--models", "--host", "--port", "--max-queue" }) Assert.Contains(option, result.Out);
    }
}
