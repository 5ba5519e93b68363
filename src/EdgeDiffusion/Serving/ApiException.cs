namespace EdgeDiffusion.Serving;

/// <summary>
/// A request the server refuses: answered with <see cref="StatusCode"/> and
/// <c>{"error": {"message": …, "type": …}}</c> (OpenAI's error shape; type invalid_request_error, rate_limit_error, …).
/// </summary>
public sealed class ApiException(int statusCode, string message, string type = ApiException.InvalidRequest, string? code = null) : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";

    public int StatusCode { get; } = statusCode;

    public string Type { get; } = type;

    public string? Code { get; } = code;

    public static ApiException BadRequest(string message) => new(400, message);

    /// <summary>The JSON body of an error response.</summary>
    public static object Body(string message, string type = InvalidRequest, string? code = null) =>
        new { error = new { message, type, code } };
}
