namespace EdgeDiffusion.Onnx;

/// <summary>How <see cref="OnnxModel.Save"/> stores initializer bytes.</summary>
public sealed record OnnxSaveOptions
{
    /// <summary>Everything inline in the .onnx file (the protobuf limit of 2 GB applies).</summary>
    public static OnnxSaveOptions Inline { get; } = new() { ExternalData = false };

    /// <summary>Every initializer above <paramref name="thresholdBytes"/> in one external data file next to the model.</summary>
    public static OnnxSaveOptions External(long thresholdBytes = 1024, string? dataFileName = null) =>
        new() { ExternalData = true, ExternalThresholdBytes = thresholdBytes, DataFileName = dataFileName };

    /// <summary>Whether initializers go to an external data file.</summary>
    public bool ExternalData { get; init; }

    /// <summary>Initializers of at least this many bytes go external; 0 sends all of them.</summary>
    public long ExternalThresholdBytes { get; init; } = 1024;

    /// <summary>Name of the data file, relative to the model's folder; default: the model's file name + ".data".</summary>
    public string? DataFileName { get; init; }

    /// <summary>Each tensor starts at a multiple of this many bytes, so runtimes can memory-map it.</summary>
    public int Alignment { get; init; } = 4096;
}
