using System.Diagnostics;
using System.Text.Json;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Pipelines;

/// <summary>What a CLIP text model with projection gives Stable Cascade: per-token hidden states and the pooled, projected embedding.</summary>
public sealed record CascadeText(float[] Hidden, int Sequence, int Width, float[] Pooled, int PooledWidth);

/// <summary>
/// CLIPTextModelWithProjection as Stable Cascade uses it: input_ids → <c>text_embeds</c> (pooled, projected) and the
/// hidden states diffusers passes as <c>clip_text</c>: <c>hidden_states[-1]</c>, the last layer's output before the final
/// layer norm, exported as <c>hidden_states.L</c> (<c>last_hidden_state</c> when a file has no such output).
/// </summary>
public sealed class OnnxCascadeTextEncoder : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _path, _hiddenName;
    private readonly bool _int64Ids;

    public OnnxCascadeTextEncoder(string modelPath, SessionSettings? settings = null)
    {
        _path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        _int64Ids = SessionMetadata.IdsAreInt64(_session, modelPath);
        if (!_session.OutputNames.Contains("text_embeds"))
            throw new ModelFolderException(modelPath, $"has no output 'text_embeds' (outputs: {string.Join(", ", _session.OutputNames)}); Stable Cascade needs a CLIP text model with projection");
        _hiddenName = _session.OutputNames.Where(n => n.StartsWith("hidden_states.", StringComparison.Ordinal))
            .OrderByDescending(n => int.TryParse(n["hidden_states.".Length..], out int k) ? k : -1).FirstOrDefault()
            ?? (_session.OutputNames.Contains("last_hidden_state") ? "last_hidden_state"
                : throw new ModelFolderException(modelPath, "has neither hidden_states.N nor last_hidden_state among its outputs"));
        PooledWidth = (int)_session.OutputMetadata["text_embeds"].Dimensions[^1];
    }

    /// <summary>The width of <c>text_embeds</c> (what the stages' clip_text_pooled must take).</summary>
    public int PooledWidth { get; }

    public CascadeText Encode(IReadOnlyList<int[]> ids)
    {
        if (ids.Count == 0) throw new ArgumentException("no prompts to encode");
        int length = ids[0].Length;
        long[] shape = [ids.Count, length];
        using var runOptions = new RunOptions();
        OrtValue input;
        IDisposable owner;
        if (_int64Ids)
        {
            var b = new OrtBinding<long>(shape);
            for (int r = 0; r < ids.Count; r++) for (int j = 0; j < length; j++) b.Data[r * length + j] = ids[r][j];
            (input, owner) = (b.Value, b);
        }
        else
        {
            var b = new OrtBinding<int>(shape);
            for (int r = 0; r < ids.Count; r++) ids[r].CopyTo(b.Data, r * length);
            (input, owner) = (b.Value, b);
        }
        using (owner)
        {
            using var outputs = _session.Run(runOptions, ["input_ids"], [input], [_hiddenName, "text_embeds"]);
            var hiddenShape = outputs[0].GetTensorTypeAndShape().Shape;
            if (hiddenShape.Length != 3) throw new ModelFolderException(_path, $"{_hiddenName} has shape [{string.Join(",", hiddenShape)}]; expected [batch, sequence, width]");
            return new CascadeText(outputs[0].GetTensorDataAsSpan<float>().ToArray(), (int)hiddenShape[1], (int)hiddenShape[2],
                outputs[1].GetTensorDataAsSpan<float>().ToArray(), PooledWidth);
        }
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>One row block of a Cascade stage's conditioning: pooled text [rows,1,P], and for the prior text [rows,S,W] and image [rows,1,I], for the decoder effnet [rows,C,h,w].</summary>
public sealed record CascadeConditioning(float[] Pooled, float[]? Text = null, int TextSequence = 0, float[]? Image = null, float[]? Effnet = null, int EffnetHeight = 0, int EffnetWidth = 0);

/// <summary>
/// A Stable Cascade stage (StableCascadeUNet: Stage C, the prior, or Stage B, the decoder) exported to ONNX:
/// <c>sample</c>, <c>timestep_ratio</c> float [batch], <c>clip_text_pooled</c> [batch,1,P], the prior's <c>clip_text</c>
/// [batch,S,W] and <c>clip_img</c> [batch,1,I], the decoder's <c>effnet</c> [batch,C,h,w] → <c>out_sample</c>. All rows go in
/// one call; buffers are bound once per <see cref="SetConditioning"/>.
/// </summary>
public sealed class OnnxCascadeStage : INoisePredictor
{
    private readonly InferenceSession _session;
    private readonly string _path, _output;
    private readonly RunOptions _runOptions = new();
    private readonly List<IDisposable> _bound = [];
    private string[] _inputNames = [];
    private OrtValue[] _inputs = [];
    private OrtValue[] _outputs = [];
    private OrtBinding<float>? _sample, _result, _ratio;
    private long _ticks;

    public OnnxCascadeStage(string modelPath, SessionSettings? settings = null)
    {
        _path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        var sample = SessionMetadata.Input(_session, "sample", modelPath);
        SessionMetadata.RequireFloat(sample, "sample", modelPath);
        var ratio = SessionMetadata.Input(_session, "timestep_ratio", modelPath);
        if (ratio.ElementDataType != TensorElementType.Float)
            throw new ModelFolderException(modelPath, $"timestep_ratio is {ratio.ElementDataType}; a Stable Cascade stage takes float timestep ratios in [0, 1] (re-export it with a float32 timestep_ratio input)");
        var pooled = SessionMetadata.Input(_session, "clip_text_pooled", modelPath);
        PooledWidth = (int)pooled.Dimensions[^1];
        Channels = sample.Dimensions.Length == 4 && sample.Dimensions[1] > 0 ? sample.Dimensions[1] : throw new ModelFolderException(modelPath, "sample needs a fixed channel count");
        TextWidth = _session.InputMetadata.TryGetValue("clip_text", out var t) ? (int)t.Dimensions[^1] : null;
        ImageWidth = _session.InputMetadata.TryGetValue("clip_img", out var im) ? (int)im.Dimensions[^1] : null;
        EffnetChannels = _session.InputMetadata.TryGetValue("effnet", out var e) ? (int)e.Dimensions[1] : null;
        var known = new HashSet<string>(["sample", "timestep_ratio", "clip_text_pooled", "clip_text", "clip_img", "effnet"]);
        var extra = _session.InputNames.Where(n => !known.Contains(n)).ToList();
        if (extra.Count > 0) throw new ModelFolderException(modelPath, $"needs inputs a Stable Cascade stage does not have ({string.Join(", ", extra)})");
        _output = _session.OutputNames.Contains("out_sample") ? "out_sample" : _session.OutputNames[0];
    }

    /// <summary>Latent channels of <c>sample</c> (16 for the prior, 4 for the decoder).</summary>
    public int Channels { get; }

    public int PooledWidth { get; }

    /// <summary>clip_text's width (the prior), null for a stage without it.</summary>
    public int? TextWidth { get; }

    public int? ImageWidth { get; }

    /// <summary>effnet's channels (the decoder), null for a stage without it.</summary>
    public int? EffnetChannels { get; }

    public string Path => _path;

    public TimeSpan ModelTime => Stopwatch.GetElapsedTime(0, _ticks);

    public int ModelCalls { get; private set; }

    public void SetConditioning(CascadeConditioning c, int rows, int height, int width)
    {
        Unbind();
        var names = new List<string>();
        var values = new List<OrtValue>();
        OrtBinding<float> Bind(string name, long[] shape, float[]? data)
        {
            var b = new OrtBinding<float>(shape);
            if (data is not null)
            {
                if (data.Length != b.Data.Length) throw new ArgumentException($"{name}: {data.Length} values given, [{string.Join(",", shape)}] needed");
                data.CopyTo(b.Data, 0);
            }
            _bound.Add(b);
            names.Add(name);
            values.Add(b.Value);
            return b;
        }
        _sample = Bind("sample", [rows, Channels, height, width], null);
        _ratio = Bind("timestep_ratio", [rows], null);
        Bind("clip_text_pooled", [rows, 1, PooledWidth], c.Pooled);
        if (TextWidth is int tw) Bind("clip_text", [rows, c.TextSequence, tw], c.Text ?? throw new ArgumentException("this stage takes clip_text"));
        if (ImageWidth is int iw) Bind("clip_img", [rows, 1, iw], c.Image ?? new float[rows * iw]);
        if (EffnetChannels is int ec) Bind("effnet", [rows, ec, c.EffnetHeight, c.EffnetWidth], c.Effnet ?? throw new ArgumentException("this stage takes effnet"));
        _result = new OrtBinding<float>([rows, Channels, height, width]);
        _bound.Add(_result);
        _inputNames = [.. names];
        _inputs = [.. values];
        _outputs = [_result.Value];
    }

    public void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output)
    {
        if (_sample is null || _ratio is null || _result is null) throw new InvalidOperationException("SetConditioning first");
        sample.CopyTo(_sample.Data);
        Array.Fill(_ratio.Data, (float)timestep);
        long started = Stopwatch.GetTimestamp();
        _session.Run(_runOptions, _inputNames, _inputs, [_output], _outputs);
        _ticks += Stopwatch.GetTimestamp() - started;
        ModelCalls++;
        _result.Data.AsSpan().CopyTo(output);
    }

    private void Unbind()
    {
        foreach (var b in _bound) b.Dispose();
        _bound.Clear();
        _sample = _result = _ratio = null;
    }

    public void Dispose()
    {
        Unbind();
        _runOptions.Dispose();
        _session.Dispose();
    }
}

/// <summary>
/// Stage A's decoder (PaellaVQModel.decode, unquantized as Stable Cascade decodes): latent_sample → sample. The pipeline
/// gives Stage B's latents; they are multiplied by the vqgan's <c>scale_factor</c> (config.json, 0.3764 when absent) and
/// the pictures come back in [0, 1], clamped, then mapped to [−1, 1] like the SD decoders'.
/// </summary>
public sealed class OnnxVqganDecoder : IDisposable
{
    public const float DefaultScaleFactor = 0.3764f;
    private readonly InferenceSession _session;
    private readonly string _output;

    public OnnxVqganDecoder(string modelPath, SessionSettings? settings = null)
    {
        _session = SessionFactory.Create(modelPath, settings);
        SessionMetadata.RequireFloat(SessionMetadata.Input(_session, "latent_sample", modelPath), "latent_sample", modelPath);
        _output = _session.OutputNames.Contains("sample") ? "sample" : _session.OutputNames[0];
        string config = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(modelPath))!, "config.json");
        var numbers = CascadeFolder.ReadNumbers(config, "scale_factor", "up_down_scale_factor", "levels");
        ScaleFactor = numbers["scale_factor"] is double f && f > 0 ? (float)f : DefaultScaleFactor;
        DownscaleFactor = numbers["up_down_scale_factor"] is double u && numbers["levels"] is double levels ? (int)u << ((int)levels - 1) : 4;
    }

    public float ScaleFactor { get; }

    /// <summary>Pixels per latent pixel along a side (4 for Stable Cascade's Stage A).</summary>
    public int DownscaleFactor { get; }

    public float[] Decode(ReadOnlySpan<float> latents, int channels, int height, int width)
    {
        using var input = new OrtBinding<float>([1, channels, height, width]);
        for (int i = 0; i < input.Data.Length; i++) input.Data[i] = latents[i] * ScaleFactor;
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, ["latent_sample"], [input.Value], [_output]);
        var pixels = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        for (int i = 0; i < pixels.Length; i++) pixels[i] = 2 * Math.Clamp(pixels[i], 0f, 1f) - 1;
        return pixels;
    }

    public void Dispose() => _session.Dispose();
}
