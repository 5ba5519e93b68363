using System.Diagnostics;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.ControlNets;

/// <summary>
/// A ControlNet as OnnxStack and optimum export it: sample, timestep, encoder_hidden_states, controlnet_cond [B, 3, H, W]
/// (pixels in [0, 1]), conditioning_scale → down_block_{i}_additional_residual …, mid_block_additional_residual. Checked
/// against the UNet it feeds when created (names, channel counts, timestep type), so a mismatch fails before any step.
/// </summary>
public sealed class OnnxControlNet : IDisposable
{
    private static readonly string[] Inputs = ["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"];
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _outputNames;
    private readonly OrtValue[] _inputs = new OrtValue[Inputs.Length];
    private readonly Array _scaleData;
    private readonly IDisposable _scaleOwner;
    private long _ticks;

    /// <param name="unet">The residual-taking UNet this ControlNet feeds: its residual inputs must be exactly this model's outputs.</param>
    public OnnxControlNet(string modelPath, OnnxUNet unet, SessionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        Path = modelPath;
        _session = SessionFactory.Create(modelPath, settings);
        try
        {
            foreach (string name in new[] { "sample", "encoder_hidden_states", "controlnet_cond" })
                SessionMetadata.RequireFloat(SessionMetadata.Input(_session, name, modelPath), name, modelPath);
            var timestep = SessionMetadata.Input(_session, "timestep", modelPath);
            if (timestep.ElementDataType != unet.TimestepType)
                throw new ModelFolderException(modelPath, $"timestep is {timestep.ElementDataType} but the UNet {unet.ModelPath} takes {unet.TimestepType}; export both with one timestep type");
            var cond = SessionMetadata.Input(_session, "controlnet_cond", modelPath);
            if (cond.Dimensions.Length != 4 || cond.Dimensions[1] is > 0 and not 3)
                throw new ModelFolderException(modelPath, $"controlnet_cond is [{string.Join(", ", cond.Dimensions)}]; expected [batch, 3, height, width] (an RGB control image)");
            var scale = SessionMetadata.Input(_session, "conditioning_scale", modelPath);
            long[] scaleShape = scale.Dimensions.Length == 0 ? [] : [1];
            (_scaleOwner, _scaleData, _inputs[4]) = scale.ElementDataType switch
            {
                TensorElementType.Float => Bind<float>(scaleShape),
                TensorElementType.Double => Bind<double>(scaleShape),
                var other => throw new ModelFolderException(modelPath, $"conditioning_scale is {other}; expected float or double"),
            };
            if (unet.ResidualInputs.Count == 0)
                throw new ModelFolderException(unet.ModelPath, $"takes no ControlNet residuals (no input {Residuals.Mid}); use the UNet shipped with the ControlNet (its unet/model.onnx) or re-export this one with the residual inputs");
            var outputs = _session.OutputMetadata;
            foreach (var input in unet.ResidualInputs)
            {
                if (!outputs.TryGetValue(input.Name, out var meta))
                    throw new ModelFolderException(modelPath, $"has no output {input.Name}, which the UNet {unet.ModelPath} takes; use a ControlNet made for this base model (outputs: {string.Join(", ", _session.OutputNames)})");
                if (Residuals.Channels(meta) is int given && input.Channels is int taken && given != taken)
                    throw new ModelFolderException(modelPath, $"gives {input.Name} with {given} channels but the UNet {unet.ModelPath} takes {taken}; use a ControlNet made for this base model's widths");
            }
            var unused = _session.OutputNames.Where(Residuals.IsResidualName).Except(unet.ResidualInputs.Select(r => r.Name)).ToList();
            if (unused.Count > 0)
                throw new ModelFolderException(modelPath, $"gives {string.Join(", ", unused)}, which the UNet {unet.ModelPath} does not take; use a ControlNet made for this base model");
            _outputNames = unet.ResidualInputs.Select(r => r.Name).ToArray();
        }
        catch
        {
            _scaleOwner?.Dispose();
            _runOptions.Dispose();
            _session.Dispose();
            throw;
        }
    }

    public string Path { get; }

    /// <summary>Time inside ONNX Runtime's runs of this ControlNet so far.</summary>
    public TimeSpan ModelTime => Stopwatch.GetElapsedTime(0, _ticks);

    /// <summary>
    /// The residuals for one UNet call, in the UNet's residual input order, allocated by ONNX Runtime; the caller disposes
    /// the collection once the UNet has run.
    /// </summary>
    public IDisposableReadOnlyCollection<OrtValue> Run(OrtValue sample, OrtValue timestep, OrtValue hiddenStates, OrtValue controlImage, double scale)
    {
        switch (_scaleData)
        {
            case float[] f: f[0] = (float)scale; break;
            case double[] d: d[0] = scale; break;
        }
        _inputs[0] = sample;
        _inputs[1] = timestep;
        _inputs[2] = hiddenStates;
        _inputs[3] = controlImage;
        long started = Stopwatch.GetTimestamp();
        var result = _session.Run(_runOptions, Inputs, _inputs, _outputNames);
        _ticks += Stopwatch.GetTimestamp() - started;
        return result;
    }

    private static (IDisposable, Array, OrtValue) Bind<T>(long[] shape) where T : unmanaged
    {
        var b = new OrtBinding<T>(shape);
        return (b, b.Data, b.Value);
    }

    public void Dispose()
    {
        _scaleOwner.Dispose();
        _runOptions.Dispose();
        _session.Dispose();
    }
}
