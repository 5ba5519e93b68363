using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Pipelines;

/// <summary>A CLIP text encoder exported by optimum: input_ids (int32 or int64) → last_hidden_state.</summary>
public sealed class OnnxTextEncoder : ITextEncoder
{
    private readonly InferenceSession _session;
    private readonly string _path;
    private readonly bool _int64Ids;
    private readonly int? _fixedBatch;
    private readonly string _output;

    public OnnxTextEncoder(string modelPath, SessionSettings? settings = null)
    {
        _path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        _int64Ids = SessionMetadata.IdsAreInt64(_session, modelPath);
        _fixedBatch = SessionMetadata.FixedBatch(SessionMetadata.Input(_session, "input_ids", modelPath));
        _output = _session.OutputNames.Contains("last_hidden_state") ? "last_hidden_state" : _session.OutputNames[0];
    }

    public float[] Encode(IReadOnlyList<int[]> ids, out int sequence, out int width)
    {
        if (ids.Count == 0) throw new ArgumentException("no prompts to encode");
        int length = ids[0].Length;
        int chunk = _fixedBatch ?? ids.Count;
        float[]? result = null;
        sequence = width = 0;
        using var runOptions = new RunOptions();
        for (int start = 0; start < ids.Count; start += chunk)
        {
            int n = Math.Min(chunk, ids.Count - start);
            long[] shape = [chunk, length];
            using IDisposable input = _int64Ids ? IdsValue<long>(ids, start, n, shape, i => i, out var value) : IdsValue<int>(ids, start, n, shape, i => i, out value);
            using var outputs = _session.Run(runOptions, ["input_ids"], [value], [_output]);
            var info = outputs[0].GetTensorTypeAndShape();
            if (info.Shape.Length != 3)
                throw new ModelFolderException(_path, $"output '{_output}' has shape [{string.Join(",", info.Shape)}]; expected [batch, sequence, width]");
            sequence = (int)info.Shape[1];
            width = (int)info.Shape[2];
            result ??= new float[ids.Count * sequence * width];
            outputs[0].GetTensorDataAsSpan<float>()[..(n * sequence * width)].CopyTo(result.AsSpan(start * sequence * width));
        }
        return result!;
    }

    private static OrtBinding<T> IdsValue<T>(IReadOnlyList<int[]> ids, int start, int n, long[] shape, Func<int, T> convert, out OrtValue value) where T : unmanaged
    {
        var binding = new OrtBinding<T>(shape);
        value = binding.Value;
        int length = (int)shape[1];
        for (int row = 0; row < n; row++)
            for (int j = 0; j < length; j++) binding.Data[row * length + j] = convert(ids[start + row][j]);
        return binding;
    }

    public void Dispose() => _session.Dispose();
}
