using System.Diagnostics;
using System.Runtime.CompilerServices;
using EdgeDiffusion.Pipelines;
using Microsoft.ML.OnnxRuntime;

namespace EdgeDiffusion.ControlNets;

/// <summary>
/// The UNet with one or more ControlNets, as diffusers' StableDiffusionControlNetPipeline runs them: before each UNet call
/// every ControlNet sees the same sample, timestep and text rows plus its control image (the same picture for every row,
/// so the unconditional half of classifier-free guidance is controlled too), scaled by its conditioning scale (0 on the
/// steps outside its guidance start/end); the residuals of several ControlNets are summed. Owns the UNet and ControlNets.
/// </summary>
public sealed class ControlledUNet : IDenoiser, IStepAwarePredictor
{
    private readonly OnnxUNet _unet;
    private readonly IReadOnlyList<OnnxControlNet> _controlNets;
    private readonly OnnxUNet.ResidualProvider _provider;
    private IReadOnlyList<ControlImage> _controls = [];
    private Pipelines.OrtBinding<float>[] _images = [];
    private readonly double[] _scales;
    private readonly List<IDisposableReadOnlyCollection<OrtValue>> _pending = [];

    public ControlledUNet(OnnxUNet unet, IReadOnlyList<OnnxControlNet> controlNets)
    {
        ArgumentNullException.ThrowIfNull(unet);
        if (controlNets is not { Count: > 0 }) throw new ArgumentException("at least one ControlNet", nameof(controlNets));
        _unet = unet;
        _controlNets = controlNets;
        _scales = new double[controlNets.Count];
        _provider = Residuals;
    }

    /// <summary>The ControlNets, in the order <see cref="SetControls"/> pairs them with control images.</summary>
    public IReadOnlyList<OnnxControlNet> ControlNets => _controlNets;

    public int LatentChannels => _unet.LatentChannels;

    /// <summary>The residual-taking UNet's file.</summary>
    public string ModelPath => _unet.ModelPath;

    /// <summary>UNet and ControlNet time together: what a step of a controlled generation costs.</summary>
    public TimeSpan ModelTime => _unet.ModelTime + ControlNetTime;

    /// <summary>The ControlNets' share of <see cref="ModelTime"/>.</summary>
    public TimeSpan ControlNetTime => _controlNets.Aggregate(TimeSpan.Zero, (sum, c) => sum + c.ModelTime);

    /// <summary>UNet calls (each preceded by one call of every ControlNet).</summary>
    public int ModelCalls => _unet.ModelCalls;

    /// <summary>One control image per ControlNet for the generations that follow; call before <see cref="SetConditioning"/>.</summary>
    public void SetControls(IReadOnlyList<ControlImage> controls)
    {
        ArgumentNullException.ThrowIfNull(controls);
        if (controls.Count != _controlNets.Count)
            throw new InvalidArgumentException("--control-image", $"{controls.Count} control images for {_controlNets.Count} ControlNets; give one --control-image per --control-model");
        _controls = controls;
        Array.Fill(_scales, 0);
    }

    public void SetConditioning(ReadOnlySpan<float> hiddenStates, int rows, int sequence, int width, int latentHeight, int latentWidth)
    {
        if (_controls.Count == 0) throw new InvalidOperationException("SetControls first");
        _unet.SetConditioning(hiddenStates, rows, sequence, width, latentHeight, latentWidth);
        DisposeImages();
        int batch = _unet.RowsPerCall, height = latentHeight * 8, pixelsWidth = latentWidth * 8, image = 3 * height * pixelsWidth;
        _images = new Pipelines.OrtBinding<float>[_controls.Count];
        for (int k = 0; k < _controls.Count; k++)
        {
            if (_controls[k].Pixels.Length != image)
                throw new InvalidArgumentException("--control-image", $"holds {_controls[k].Pixels.Length} values; expected 3×{height}×{pixelsWidth} for this generation");
            // The same picture for every row of a call: each image of the batch and both guidance halves.
            _images[k] = new Pipelines.OrtBinding<float>([batch, 3, height, pixelsWidth]);
            for (int row = 0; row < batch; row++) _controls[k].Pixels.CopyTo(_images[k].Data, row * image);
        }
        BeginStep(0, 1);
    }

    public void BeginStep(int index, int count)
    {
        for (int k = 0; k < _controls.Count; k++)
            _scales[k] = _controls[k].ActsOn(index, count) ? _controls[k].Scale : 0.0;
    }

    public void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output)
    {
        try { _unet.Predict(sample, timestep, output, _provider); }
        finally { DisposePending(); }
    }

    private IReadOnlyList<OrtValue> Residuals(int call, OrtValue sample, OrtValue timestep, OrtValue hiddenStates)
    {
        DisposePending(); // the previous call's residuals: that UNet run is done
        IReadOnlyList<OrtValue>? sum = null;
        for (int k = 0; k < _controlNets.Count; k++)
        {
            // A ControlNet outside its guidance range still runs at scale 0, as diffusers does: zero residuals of the right shapes.
            var outputs = _controlNets[k].Run(sample, timestep, hiddenStates, _images[k].Value, _scales[k]);
            _pending.Add(outputs);
            if (sum is null) sum = outputs;
            else
                for (int r = 0; r < outputs.Count; r++)
                    Add(outputs[r].GetTensorDataAsSpan<float>(), sum[r].GetTensorMutableDataAsSpan<float>());
        }
        return sum!;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(ReadOnlySpan<float> source, Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] += source[i];
    }

    private void DisposePending()
    {
        foreach (var outputs in _pending) outputs.Dispose();
        _pending.Clear();
    }

    private void DisposeImages()
    {
        foreach (var image in _images) image.Dispose();
        _images = [];
    }

    public void Dispose()
    {
        DisposePending();
        DisposeImages();
        foreach (var controlNet in _controlNets) controlNet.Dispose();
        _unet.Dispose();
    }
}
