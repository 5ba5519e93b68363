using System.Text.Encodings.Web;
using System.Text.Json;

namespace EdgeDiffusion.Cli;

/// <summary>The one JSON style every --json output uses: snake_case names, indented, non-ASCII kept readable.</summary>
public static class CliJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);
}
