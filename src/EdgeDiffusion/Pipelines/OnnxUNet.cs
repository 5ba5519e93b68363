using System.Diagnostics;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Pipelines;

/// <summary>
/// The UNet of an optimum export: sample, timestep, encoder_hidden_states → out_sample; a UNet made for ControlNet also
/// takes the residuals (down_block_{i}_additional_residual …, mid_block_additional_residual), which only
/// <see cref="ControlNets.ControlledUNet"/> feeds (<see cref="ResidualInputs"/>).
/// The timestep's type and rank are read from the model (int64 [B], float [B], float scalar and float16 all occur in the
/// wild). With a dynamic batch all rows go in one call (classifier-free guidance: one call of batch 2); with a fixed
/// batch the rows are split into calls of that size. Buffers and OrtValues are made once per <see cref="SetConditioning"/>.
/// </summary>
public sealed class OnnxUNet : IDenoiser
{
    private readonly InferenceSession _session;
    private readonly string _path;
    private readonly int? _fixedBatch;
    private readonly NodeMetadata _timestep;
    private readonly string _output;
    private static readonly string[] BaseInputs = ["sample", "timestep", "encoder_hidden_states"];
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly RunOptions _runOptions = new();
    private Chunk[] _chunks = [];
    private int _rowSize;

    public OnnxUNet(string modelPath, SessionSettings? settings = null)
    {
        _path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        var sample = SessionMetadata.Input(_session, "sample", modelPath);
        SessionMetadata.RequireFloat(sample, "sample", modelPath);
        SessionMetadata.RequireFloat(SessionMetadata.Input(_session, "encoder_hidden_states", modelPath), "encoder_hidden_states", modelPath);
        _timestep = SessionMetadata.Input(_session, "timestep", modelPath);
        if (_timestep.ElementDataType is not (TensorElementType.Int64 or TensorElementType.Int32 or TensorElementType.Float or TensorElementType.Float16 or TensorElementType.Double))
            throw new ModelFolderException(modelPath, $"timestep is {_timestep.ElementDataType}; expected int64, int32, float, float16 or double");
        ResidualInputs = _session.InputNames.Where(ControlNets.Residuals.IsResidualName)
            .Select(name => new ControlNets.ResidualInput(name, ControlNets.Residuals.Channels(_session.InputMetadata[name]))).ToList();
        _inputNames = [.. BaseInputs, .. ResidualInputs.Select(r => r.Name)];
        var extra = _session.InputNames.Except(_inputNames).ToList();
        if (extra.Count > 0)
            throw new ModelFolderException(modelPath, $"needs inputs this pipeline does not provide ({string.Join(", ", extra)}); only SD 1.x/2.x-style UNets are supported");
        _fixedBatch = SessionMetadata.FixedBatch(sample);
        LatentChannels = sample.Dimensions.Length == 4 && sample.Dimensions[1] > 0 ? sample.Dimensions[1] : 4;
        FixedHeight = sample.Dimensions.Length == 4 && sample.Dimensions[2] > 0 ? sample.Dimensions[2] : null;
        FixedWidth = sample.Dimensions.Length == 4 && sample.Dimensions[3] > 0 ? sample.Dimensions[3] : null;
        _output = _session.OutputNames.Contains("out_sample") ? "out_sample" : _session.OutputNames[0];
        _outputNames = [_output];
    }

    public int LatentChannels { get; }

    /// <summary>The ControlNet residual inputs, in the session's input order; empty for a plain UNet.</summary>
    public IReadOnlyList<ControlNets.ResidualInput> ResidualInputs { get; }

    /// <summary>The model file.</summary>
    public string ModelPath => _path;

    /// <summary>The timestep input's element type (a ControlNet fed the same timestep value must take the same).</summary>
    internal TensorElementType TimestepType => _timestep.ElementDataType;

    /// <summary>Rows per model call after <see cref="SetConditioning"/>: the fixed batch, else all rows.</summary>
    internal int RowsPerCall => _chunks.Length == 0 ? throw new InvalidOperationException("SetConditioning first") : _chunks[0].Batch;

    private long _modelTicks;

    public TimeSpan ModelTime => Stopwatch.GetElapsedTime(0, _modelTicks);

    public int ModelCalls { get; private set; }

    /// <summary>Latent height the model is fixed to, if any.</summary>
    public int? FixedHeight { get; }

    public int? FixedWidth { get; }

    public void SetConditioning(ReadOnlySpan<float> hiddenStates, int rows, int sequence, int width, int latentHeight, int latentWidth)
    {
        if (FixedHeight is { } h && h != latentHeight || FixedWidth is { } w && w != latentWidth)
            throw new InvalidArgumentException("size", $"this UNet is fixed to {FixedWidth * 8}x{FixedHeight * 8} pixels; generate at that size");
        int batch = _fixedBatch ?? rows;
        if (rows % batch != 0)
            throw new ModelFolderException(_path, $"has a fixed batch of {batch}, which does not divide {rows} rows; use a count that fits");
        DisposeChunks();
        _rowSize = LatentChannels * latentHeight * latentWidth;
        int hiddenRow = sequence * width;
        _chunks = new Chunk[rows / batch];
        for (int c = 0; c < _chunks.Length; c++)
        {
            var chunk = new Chunk(batch, LatentChannels, latentHeight, latentWidth, sequence, width, _timestep, ResidualInputs.Count);
            hiddenStates.Slice(c * batch * hiddenRow, batch * hiddenRow).CopyTo(chunk.Hidden.Data);
            _chunks[c] = chunk;
        }
    }

    /// <summary>One call on zeros at the given shape, so ONNX Runtime's first-run work is done before the first real step.</summary>
    public void WarmUp(int rows, int latentHeight, int latentWidth)
    {
        int width = (int)_session.InputMetadata["encoder_hidden_states"].Dimensions[2];
        if (width <= 0) width = 768;
        SetConditioning(new float[rows * 77 * width], rows, 77, width, latentHeight, latentWidth);
        var buffer = new float[rows * LatentChannels * latentHeight * latentWidth];
        Predict(buffer, 500, buffer);
        _modelTicks = 0;
        ModelCalls = 0;
        DisposeChunks();
    }

    public void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output)
    {
        if (ResidualInputs.Count > 0)
            throw new ModelFolderException(_path, $"takes ControlNet residuals ({ResidualInputs[0].Name} …); generate with a ControlNet (--control-image) or use a UNet without residual inputs");
        Predict(sample, timestep, output, null);
    }

    /// <summary>
    /// The residuals of one call: given the call's index and its bound sample, timestep and encoder_hidden_states, the
    /// values for <see cref="ResidualInputs"/> in that order (owned by the provider, alive until the next call).
    /// </summary>
    internal delegate IReadOnlyList<OrtValue> ResidualProvider(int call, OrtValue sample, OrtValue timestep, OrtValue hiddenStates);

    /// <summary><see cref="Predict(ReadOnlySpan{float}, double, Span{float})"/> with the residual inputs from <paramref name="residuals"/>; its time is not counted in <see cref="ModelTime"/>.</summary>
    internal void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output, ResidualProvider? residuals)
    {
        if (_chunks.Length == 0) throw new InvalidOperationException("SetConditioning first");
        for (int c = 0; c < _chunks.Length; c++)
        {
            var chunk = _chunks[c];
            int span = chunk.Batch * _rowSize;
            sample.Slice(c * span, span).CopyTo(chunk.Sample.Data);
            chunk.SetTimestep(timestep);
            if (residuals is not null)
            {
                var values = residuals(c, chunk.Sample.Value, chunk.Timestep, chunk.Hidden.Value);
                for (int r = 0; r < ResidualInputs.Count; r++) chunk.Inputs[BaseInputs.Length + r] = values[r];
            }
            long started = Stopwatch.GetTimestamp();
            _session.Run(_runOptions, _inputNames, chunk.Inputs, _outputNames, chunk.Outputs);
            _modelTicks += Stopwatch.GetTimestamp() - started;
            ModelCalls++;
            chunk.Output.Data.AsSpan().CopyTo(output.Slice(c * span, span));
        }
    }

    private void DisposeChunks()
    {
        foreach (var chunk in _chunks) chunk.Dispose();
        _chunks = [];
    }

    public void Dispose()
    {
        DisposeChunks();
        _runOptions.Dispose();
        _session.Dispose();
    }

    /// <summary>One call's inputs and output, bound to pinned buffers.</summary>
    private sealed class Chunk : IDisposable
    {
        private readonly TensorElementType _timestepType;
        private readonly IDisposable _timestepOwner;
        private readonly Array _timestepData;

        public Chunk(int batch, int channels, int height, int width, int sequence, int hiddenWidth, NodeMetadata timestep, int residuals)
        {
            Batch = batch;
            Sample = new OrtBinding<float>([batch, channels, height, width]);
            Output = new OrtBinding<float>([batch, channels, height, width]);
            Hidden = new OrtBinding<float>([batch, sequence, hiddenWidth]);
            _timestepType = timestep.ElementDataType;
            long[] shape = timestep.Dimensions.Length == 0 ? [] : [timestep.Dimensions[0] > 0 ? timestep.Dimensions[0] : batch];
            (_timestepOwner, _timestepData, Timestep) = _timestepType switch
            {
                TensorElementType.Int64 => Bind<long>(shape),
                TensorElementType.Int32 => Bind<int>(shape),
                TensorElementType.Float16 => Bind<Float16>(shape),
                TensorElementType.Double => Bind<double>(shape),
                _ => Bind<float>(shape),
            };
            // The residual slots are filled per call with the provider's values.
            Inputs = [Sample.Value, Timestep, Hidden.Value, .. new OrtValue[residuals]];
            Outputs = [Output.Value];
        }

        /// <summary>The run's argument lists, made once so a step allocates nothing.</summary>
        public OrtValue[] Inputs { get; }
        public OrtValue[] Outputs { get; }

        private static (IDisposable, Array, OrtValue) Bind<T>(long[] shape) where T : unmanaged
        {
            var b = new OrtBinding<T>(shape);
            return (b, b.Data, b.Value);
        }

        public int Batch { get; }
        public OrtBinding<float> Sample { get; }
        public OrtBinding<float> Output { get; }
        public OrtBinding<float> Hidden { get; }
        public OrtValue Timestep { get; }

        public void SetTimestep(double t)
        {
            switch (_timestepData)
            {
                // Integer timesteps: the discrete schedulers give whole numbers; round the fractional ones of Euler/Karras.
                case long[] l: Array.Fill(l, (long)Math.Round(t)); break;
                case int[] i: Array.Fill(i, (int)Math.Round(t)); break;
                case Float16[] h: Array.Fill(h, (Float16)(float)t); break;
                case double[] d: Array.Fill(d, t); break;
                case float[] f: Array.Fill(f, (float)t); break;
            }
        }

        public void Dispose()
        {
            Sample.Dispose();
            Output.Dispose();
            Hidden.Dispose();
            _timestepOwner.Dispose();
        }
    }
}
