using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// A managed buffer and the OrtValue that wraps it (ONNX Runtime pins the array), so a model can be run repeatedly
/// with no allocation: write into <see cref="Data"/>, run, read. Disposes the OrtValue it created.
/// </summary>
internal sealed class OrtBinding<T> : IDisposable where T : unmanaged
{
    public OrtBinding(long[] shape)
    {
        long count = 1;
        foreach (long d in shape) count *= d;
        Data = new T[count];
        Shape = shape;
        Value = OrtValue.CreateTensorValueFromMemory(Data, shape);
    }

    public T[] Data { get; }

    public long[] Shape { get; }

    public OrtValue Value { get; }

    public void Dispose() => Value.Dispose();
}

/// <summary>Facts read from a session's input/output metadata.</summary>
internal static class SessionMetadata
{
    public static NodeMetadata Input(InferenceSession session, string name, string modelPath) =>
        session.InputMetadata.TryGetValue(name, out var meta)
            ? meta
            : throw new ModelFolderException(modelPath, $"has no input '{name}' (inputs: {string.Join(", ", session.InputNames)}); it is not the model this component expects");

    /// <summary>Whether a text encoder's input_ids are int64 (else int32); any other type is a typed error naming the file.</summary>
    public static bool IdsAreInt64(InferenceSession session, string modelPath) =>
        Input(session, "input_ids", modelPath).ElementDataType switch
        {
            TensorElementType.Int64 => true,
            TensorElementType.Int32 => false,
            var other => throw new ModelFolderException(modelPath, $"input_ids is {other}; expected int32 or int64"),
        };

    /// <summary>The first dimension when it is fixed, null when it is dynamic (symbolic or -1).</summary>
    public static int? FixedBatch(NodeMetadata meta) => meta.Dimensions.Length > 0 && meta.Dimensions[0] > 0 ? meta.Dimensions[0] : null;

    public static void RequireFloat(NodeMetadata meta, string name, string modelPath)
    {
        if (meta.ElementDataType != TensorElementType.Float)
            throw new ModelFolderException(modelPath, $"input '{name}' is {meta.ElementDataType}; only float32 models are supported so far");
    }
}
