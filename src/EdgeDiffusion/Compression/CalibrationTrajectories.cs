using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Schedulers;
using EdgeDiffusion.Text;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// UNet inputs recorded from the model's own denoising runs (every step of a few prompts, with classifier-free
/// guidance as generate runs it): the calibration set W8A8 activation ranges are measured on, so they cover the
/// latents, timesteps and text conditioning a real generation gives the UNet, which fixed random inputs do not.
/// </summary>
public sealed class CalibrationTrajectories : IDisposable
{
    /// <summary>
    /// Prompts used when none are given: shapes-and-colours captions the default model was trained on (none of its
    /// held-out ones) and everyday photo prompts, so the set suits tiny-shapes and real SD models alike.
    /// </summary>
    public static IReadOnlyList<string> DefaultPrompts { get; } =
    [
        "a red circle on a blue background",
        "a yellow square on a black background",
        "a green triangle on a red background",
        "a white square on a purple background",
        "a photograph of a mountain lake at sunrise",
        "a portrait of an old man, oil painting",
        "a city street at night in the rain",
        "a bowl of fruit on a wooden table",
    ];

    private readonly List<(string Name, OrtValue Value)[]> _samples = [];

    private CalibrationTrajectories(string description) => Description = description;

    /// <summary>UNet inputs (sample, timestep, encoder_hidden_states) of each recorded call.</summary>
    public IReadOnlyList<(string Name, OrtValue Value)[]> Samples => _samples;

    /// <summary>What was recorded, for the recipe and the model's metadata.</summary>
    public string Description { get; }

    /// <summary>Runs the SD folder's text encoder and UNet on <paramref name="prompts"/> (seeds 0, 1, …) and records every UNet call.</summary>
    public static CalibrationTrajectories Record(string folder, IReadOnlyList<string>? prompts = null, int steps = 8, double? guidance = null,
        int? size = null, Runtime.SessionSettings? settings = null, IProgress<string>? progress = null, CancellationToken cancellation = default)
    {
        prompts ??= DefaultPrompts;
        if (prompts.Count == 0) throw new InvalidArgumentException("--calibration-prompts", "no prompts; give at least one");
        if (steps < 1) throw new InvalidArgumentException("--calibration-steps", $"{steps} must be at least 1");
        var model = ModelFolder.Open(folder);
        string unetPath = model.RequireComponent("unet"), textPath = model.RequireComponent("text_encoder");
        var tokenizer = ClipTokenizer.FromFolder(Path.Combine(model.Root, "tokenizer"));
        string schedulerFile = Path.Combine(model.Root, "scheduler", "scheduler_config.json");
        var schedulerConfig = File.Exists(schedulerFile) ? SchedulerConfig.FromFile(schedulerFile) : new SchedulerConfig { ClassName = "EulerDiscreteScheduler" };
        var (width, height) = size is { } s ? (s, s) : StableDiffusionPipeline.ConfiguredSize(model.Root) ?? (512, 512);
        var timestepInput = Onnx.OnnxModel.ReadGraphOutline(unetPath).Input.First(i => i.Name == "timestep");

        var result = new CalibrationTrajectories($"{prompts.Count} prompts × {steps} steps at {width}×{height}, the model's own trajectories");
        var recorder = new RecordingDenoiser(new OnnxUNet(unetPath, settings), result, timestepInput);
        try
        {
            using var pipeline = new StableDiffusionPipeline(tokenizer, new OnnxTextEncoder(textPath, settings), recorder, new NoDecoder(), schedulerConfig);
            double? modelGuidance = StableDiffusionPipeline.ConfiguredGuidance(model.Root);
            for (int p = 0; p < prompts.Count; p++)
            {
                cancellation.ThrowIfCancellationRequested();
                progress?.Report($"calibration {p + 1}/{prompts.Count}: {prompts[p]}");
                pipeline.Generate(new GenerationRequest
                {
                    Prompt = prompts[p], Steps = steps, Seed = (ulong)p, Width = width, Height = height,
                    Guidance = guidance ?? modelGuidance,
                }, cancellation: cancellation);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var sample in _samples)
            foreach (var (_, value) in sample) value.Dispose();
        _samples.Clear();
    }

    /// <summary>Passes calls to the UNet and keeps a copy of each call's inputs.</summary>
    private sealed class RecordingDenoiser(IDenoiser inner, CalibrationTrajectories into, ValueInfoProto timestep) : IDenoiser
    {
        private float[] _hidden = [];
        private long[] _hiddenShape = [];
        private long[] _sampleShape = [];

        public int LatentChannels => inner.LatentChannels;
        public TimeSpan ModelTime => inner.ModelTime;
        public int ModelCalls => inner.ModelCalls;

        public void SetConditioning(ReadOnlySpan<float> hiddenStates, int rows, int sequence, int width, int latentHeight, int latentWidth)
        {
            _hidden = hiddenStates.ToArray();
            _hiddenShape = [rows, sequence, width];
            _sampleShape = [rows, inner.LatentChannels, latentHeight, latentWidth];
            inner.SetConditioning(hiddenStates, rows, sequence, width, latentHeight, latentWidth);
        }

        public void Predict(ReadOnlySpan<float> sample, double t, Span<float> output)
        {
            into._samples.Add(
            [
                ("sample", OrtValue.CreateTensorValueFromMemory(sample.ToArray(), _sampleShape)),
                ("timestep", Timestep(t, _sampleShape[0])),
                ("encoder_hidden_states", OrtValue.CreateTensorValueFromMemory(_hidden, _hiddenShape)),
            ]);
            inner.Predict(sample, t, output);
        }

        /// <summary>The timestep in the type and rank the UNet declares (int64 [B] in optimum exports; float and scalars occur).</summary>
        private OrtValue Timestep(double t, long rows)
        {
            var type = timestep.Type.TensorType;
            long[] shape = type.Shape is { Dim.Count: > 0 } ? [rows] : [];
            int count = shape.Length == 0 ? 1 : (int)rows;
            return (DT)type.ElemType switch
            {
                DT.Int64 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((long)Math.Round(t), count).ToArray(), shape),
                DT.Int32 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((int)Math.Round(t), count).ToArray(), shape),
                DT.Double => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(t, count).ToArray(), shape),
                DT.Float16 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((Float16)(float)t, count).ToArray(), shape),
                _ => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((float)t, count).ToArray(), shape),
            };
        }

        public void Dispose() => inner.Dispose();
    }

    /// <summary>Calibration needs the UNet's inputs only: no picture is decoded.</summary>
    private sealed class NoDecoder : IImageDecoder
    {
        public float[] Decode(ReadOnlySpan<float> latents, int latentChannels, int latentHeight, int latentWidth) => new float[3 * latentHeight * 8 * latentWidth * 8];
        public void Dispose() { }
    }
}
