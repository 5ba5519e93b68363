using EdgeDiffusion.Onnx;

namespace EdgeDiffusion.Architectures;

/// <summary>The element type and rank of the UNet's <c>timestep</c> input; exporters differ, and a pipeline must read whichever it finds.</summary>
public enum TimestepInput
{
    /// <summary>int64 [batch]: what optimum exports.</summary>
    Int64Batch,

    /// <summary>float32 [batch].</summary>
    Float32Batch,

    /// <summary>float32 scalar [].</summary>
    Float32Scalar,

    /// <summary>int32 [batch].</summary>
    Int32Batch,
}

/// <summary>Input/output choices of the exported graphs (the architecture and parameter names do not change).</summary>
public sealed record ExportOptions
{
    /// <summary>The UNet's timestep input type and rank.</summary>
    public TimestepInput Timestep { get; init; } = TimestepInput.Int64Batch;

    /// <summary>
    /// A fixed batch size for the UNet's inputs and output (e.g. 1, so classifier-free guidance needs two calls);
    /// null keeps the batch dimension symbolic.
    /// </summary>
    public int? UNetBatch { get; init; }

    /// <summary>
    /// Whether the UNet takes ControlNet residuals: inputs <c>down_block_{i}_additional_residual</c> added to its skips and
    /// <c>mid_block_additional_residual</c> added to the mid block's output (ONNX has no optional inputs, so a UNet either
    /// always takes them or never).
    /// </summary>
    public bool ControlNetResiduals { get; init; }

    /// <summary>Whether the text encoder's input_ids are int64 rather than int32.</summary>
    public bool Int64InputIds { get; init; }

    /// <summary>The default-domain opset of every graph.</summary>
    public int Opset { get; init; } = GraphBuilder.DefaultOpset;
}
