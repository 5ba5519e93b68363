namespace EdgeDiffusion.Serving;

/// <summary>What <see cref="EdgeDiffusionServer"/> serves, where, and its limits.</summary>
public sealed record ServerOptions
{
    /// <summary>One model folder to serve (default: the shipped default model), named by its folder name.</summary>
    public string? Model { get; init; }

    /// <summary>A folder whose subfolders are model folders (model_index.json or unet/model.onnx), each served under its name.</summary>
    public string? ModelsRoot { get; init; }

    /// <summary>The address to listen on: an IP address or "localhost". Loopback by default.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port; 0 picks a free one (see <see cref="EdgeDiffusionServer.Address"/>).</summary>
    public int Port { get; init; } = 7860;

    /// <summary>Requests that may wait per model while one generates; one more is answered 429.</summary>
    public int MaxQueue { get; init; } = 8;

    /// <summary>Largest request body; a larger one is answered 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;

    /// <summary>Longest prompt (and negative prompt), in characters.</summary>
    public int MaxPromptLength { get; init; } = 1000;

    /// <summary>Most denoising steps a request may ask for.</summary>
    public int MaxSteps { get; init; } = 150;

    /// <summary>Largest width or height.</summary>
    public int MaxSize { get; init; } = 2048;

    /// <summary>Most pictures per request (n, batch_size).</summary>
    public int MaxImages { get; init; } = 8;

    /// <summary>A client sending its body slower than this (after <see cref="SlowBodyGracePeriod"/>) is disconnected.</summary>
    public double MinBodyBytesPerSecond { get; init; } = 240;

    /// <summary>How long a body may arrive slower than <see cref="MinBodyBytesPerSecond"/> before the connection is closed.</summary>
    public TimeSpan SlowBodyGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a client may take to send its request headers.</summary>
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Session settings for the models it loads (null: defaults, with the session cache).</summary>
    public Runtime.SessionSettings? Settings { get; init; }
}
