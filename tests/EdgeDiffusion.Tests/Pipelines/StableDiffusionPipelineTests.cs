using EdgeDiffusion.Architectures;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Schedulers;
using EdgeDiffusion.Text;

namespace EdgeDiffusion.Tests.Pipelines;

[Collection("TinyModels")]
public sealed class StableDiffusionPipelineTests(TinyModels models)
{
    private static GenerationRequest Request(string scheduler = "euler", double guidance = 7.5, int steps = 4) => new()
    {
        Prompt = "a red circle on a blue background",
        NegativePrompt = "blurry",
        Steps = steps,
        Guidance = guidance,
        Scheduler = scheduler,
        Seed = 7,
        Width = 64,
        Height = 64,
    };

    private static float MaxAbsDifference(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    public static TheoryData<string> SchedulerNames() => new(SchedulerFactory.Names);

    [Theory]
    [MemberData(nameof(SchedulerNames))]
    public void Txt2ImgRunsWithEveryScheduler(string scheduler)
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var result = pipeline.Generate(Request(scheduler));
        var image = Assert.Single(result.Images);
        Assert.Equal(3 * 64 * 64, image.Length);
        Assert.All(image, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(scheduler, result.Scheduler);
        int expectedCalls = scheduler == "pndm" ? 5 : 4; // PLMS makes one model call more than the step count
        Assert.Equal(expectedCalls, result.Timings.DenoiserCalls);
        Assert.Equal(64, result.Width);
    }

    [Theory]
    [MemberData(nameof(SchedulerNames))]
    public void Img2ImgRunsWithEveryScheduler(string scheduler)
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var init = new float[3 * 64 * 64];
        for (int i = 0; i < init.Length; i++) init[i] = (i % 64) / 32f - 1f;
        var request = Request(scheduler, steps: 8) with { InitImage = init, Strength = 0.5 };
        var result = pipeline.Generate(request);
        Assert.All(Assert.Single(result.Images), v => Assert.True(float.IsFinite(v)));
        // diffusers' get_timesteps: floor(8 × 0.5) = 4 steps run (PLMS too: it starts after its duplicated timestep, without the redo).
        Assert.Equal(4, result.Timings.Steps);
        Assert.NotEqual(pipeline.Generate(Request(scheduler, steps: 8)).Images[0], result.Images[0]);
    }

    [Fact]
    public void SameSeedGivesTheSameImageAndAnotherSeedDoesNot()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var a = pipeline.Generate(Request("euler-a")).Images[0];
        var b = pipeline.Generate(Request("euler-a")).Images[0];
        var c = pipeline.Generate(Request("euler-a") with { Seed = 8 }).Images[0];
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void ImageOfABatchEqualsTheSingleImageWithItsSeed()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var batch = pipeline.Generate(Request("euler-a") with { Count = 2 });
        var second = pipeline.Generate(Request("euler-a") with { Seed = 8 });
        Assert.Equal(new ulong[] { 7, 8 }, batch.Seeds);
        Assert.True(MaxAbsDifference(batch.Images[1], second.Images[0]) < 1e-4f);
    }

    [Fact]
    public void FixedBatchUNetRunsGuidanceAsTwoCallsWithTheSameResult()
    {
        using var dynamic = StableDiffusionPipeline.Load(models.Folder());
        using var fixedBatch = StableDiffusionPipeline.Load(models.Folder(unetBatch: 1));
        var one = dynamic.Generate(Request("ddim"));
        var two = fixedBatch.Generate(Request("ddim"));
        Assert.Equal(4, one.Timings.DenoiserCalls);
        Assert.Equal(8, two.Timings.DenoiserCalls);
        Assert.True(MaxAbsDifference(one.Images[0], two.Images[0]) < 1e-4f);
    }

    [Fact]
    public void GuidanceAtOneSkipsTheUnconditionalPassAndChangesTheImage()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder(unetBatch: 1));
        var unguided = pipeline.Generate(Request("ddim", guidance: 1));
        var guided = pipeline.Generate(Request("ddim", guidance: 7.5));
        Assert.Equal(4, unguided.Timings.DenoiserCalls);
        Assert.Equal(8, guided.Timings.DenoiserCalls);
        Assert.True(MaxAbsDifference(unguided.Images[0], guided.Images[0]) > 1e-3f);
    }

    public static TheoryData<TimestepInput, bool> TimestepVariants() => new()
    {
        { TimestepInput.Float32Batch, false },
        { TimestepInput.Float32Scalar, true },
        { TimestepInput.Int32Batch, false },
        { TimestepInput.Int64Batch, true },
    };

    [Theory]
    [MemberData(nameof(TimestepVariants))]
    public void EveryTimestepAndIdTypeGivesTheSameImage(TimestepInput timestep, bool int64Ids)
    {
        // DDIM's timesteps are whole numbers, so integer and float timestep inputs see the same values.
        using var reference = StableDiffusionPipeline.Load(models.Folder());
        using var variant = StableDiffusionPipeline.Load(models.Folder(timestep, int64Ids: int64Ids));
        var expected = reference.Generate(Request("ddim")).Images[0];
        var actual = variant.Generate(Request("ddim")).Images[0];
        Assert.True(MaxAbsDifference(expected, actual) < 1e-4f);
    }

    [Fact]
    public void ProgressIsReportedPerStepAndCancellationStops()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var seen = new List<int>();
        pipeline.Generate(Request(), p => seen.Add(p.Step));
        Assert.Equal(new[] { 1, 2, 3, 4 }, seen);

        using var cancel = new CancellationTokenSource();
        int calls = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(Request(steps: 10), p => { if (++calls == 2) cancel.Cancel(); }, cancel.Token));
        Assert.Equal(2, calls);
    }

    [Fact]
    public void LongPromptIsAWarningNotACrash()
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        string prompt = string.Join(" ", Enumerable.Range(0, 90).Select(i => $"word{i}"));
        var result = pipeline.Generate(Request() with { Prompt = prompt });
        Assert.Contains(result.Warnings, w => w.Contains("prompt is longer than 77 tokens"));
        Assert.Single(result.Images);
    }

    [Theory]
    [InlineData(100, 64, "--width")]
    [InlineData(64, 60, "--height")]
    public void SizeThatIsNotAMultipleOf8IsRejected(int width, int height, string option)
    {
        using var pipeline = StableDiffusionPipeline.Load(models.Folder());
        var e = Assert.Throws<InvalidArgumentException>(() => pipeline.Generate(Request() with { Width = width, Height = height }));
        Assert.Equal(option, e.Argument);
        Assert.Contains("multiple of 8", e.Message);
    }

    [Fact]
    public void MissingComponentFolderIsNamed()
    {
        string folder = models.CopyOfDefault();
        Directory.Delete(Path.Combine(folder, "vae_decoder"), recursive: true);
        var e = Assert.Throws<ModelFolderException>(() => StableDiffusionPipeline.Load(folder));
        Assert.Contains("vae_decoder", e.Message);
    }

    [Fact]
    public void MissingVocabIsNamed()
    {
        string folder = models.CopyOfDefault();
        File.Delete(Path.Combine(folder, "tokenizer", "vocab.json"));
        var e = Assert.Throws<TokenizerException>(() => StableDiffusionPipeline.Load(folder));
        Assert.Contains("vocab.json", e.Message);
    }

    [Fact]
    public void Img2ImgWithoutAVaeEncoderIsNamed()
    {
        string folder = models.CopyOfDefault();
        Directory.Delete(Path.Combine(folder, "vae_encoder"), recursive: true);
        using var pipeline = StableDiffusionPipeline.Load(folder);
        var e = Assert.Throws<ModelFolderException>(() => pipeline.Generate(Request() with { InitImage = new float[3 * 64 * 64] }));
        Assert.Contains("vae_encoder", e.Message);
    }

    [Fact]
    public void GuidanceCombinesUnconditionalAndConditionalPredictionsByTheFormula()
    {
        // Fakes: the text encoder marks each row with its first id; the denoiser predicts u for the negative row and c for
        // the positive one. Guided generation with (u, c, g) must equal unguided generation whose denoiser predicts u + g(c − u).
        const float u = 0.25f, c = -0.5f, g = 3f;
        var tokenizer = ClipTokenizer.FromFolder(Path.Combine(models.Folder(), "tokenizer"));
        int negativeFirstId = tokenizer.Encode("").Ids[1];
        var config = new SchedulerConfig { ClassName = "DDIMScheduler" };
        float[] Run(IDenoiser denoiser, double guidance)
        {
            using var pipeline = new StableDiffusionPipeline(tokenizer, new FirstIdTextEncoder(), denoiser, new LatentsAsImage(), config);
            return pipeline.Generate(Request("ddim", guidance) with { NegativePrompt = "" }).Images[0];
        }
        var guided = Run(new ConstantDenoiser(row => row == negativeFirstId ? u : c), g);
        var combined = Run(new ConstantDenoiser(_ => u + g * (c - u)), 1);
        Assert.Equal(combined, guided);
    }

    /// <summary>Hidden states hold the second token id of each row (the first after BOS) everywhere.</summary>
    private sealed class FirstIdTextEncoder : ITextEncoder
    {
        public float[] Encode(IReadOnlyList<int[]> ids, out int sequence, out int width)
        {
            sequence = ids[0].Length;
            width = 2;
            var result = new float[ids.Count * sequence * width];
            for (int r = 0; r < ids.Count; r++) Array.Fill(result, ids[r][1], r * sequence * width, sequence * width);
            return result;
        }

        public void Dispose() { }
    }

    private sealed class ConstantDenoiser(Func<int, float> predictionForRowMarker) : IDenoiser
    {
        private float[] _rowValues = [];
        private int _rowSize;

        public int LatentChannels => 4;

        public void SetConditioning(ReadOnlySpan<float> hiddenStates, int rows, int sequence, int width, int latentHeight, int latentWidth)
        {
            _rowSize = 4 * latentHeight * latentWidth;
            _rowValues = new float[rows];
            for (int r = 0; r < rows; r++) _rowValues[r] = predictionForRowMarker((int)hiddenStates[r * sequence * width]);
        }

        public void Predict(ReadOnlySpan<float> sample, double timestep, Span<float> output)
        {
            for (int r = 0; r < _rowValues.Length; r++) output.Slice(r * _rowSize, _rowSize).Fill(_rowValues[r]);
            ModelCalls++;
        }

        public TimeSpan ModelTime => TimeSpan.Zero;

        public int ModelCalls { get; private set; }

        public void Dispose() { }
    }

    private sealed class LatentsAsImage : IImageDecoder
    {
        public float[] Decode(ReadOnlySpan<float> latents, int latentChannels, int latentHeight, int latentWidth)
        {
            var image = new float[3 * latentHeight * 8 * latentWidth * 8];
            latents[..Math.Min(latents.Length, image.Length)].CopyTo(image);
            return image;
        }

        public void Dispose() { }
    }
}

[Collection("TinyModels")]
public sealed class LowMemoryPipelineTests(TinyModels models)
{
    [Fact]
    public void LowMemoryModeGivesTheSameImageByteForByte()
    {
        var request = new GenerationRequest { Prompt = "a blue square", Steps = 4, Scheduler = "euler-a", Seed = 3, Width = 64, Height = 64, Count = 2 };
        using var normal = StableDiffusionPipeline.Load(models.Folder());
        using var lean = StableDiffusionPipeline.Load(models.Folder(), lowMemory: true);
        Assert.Equal(["text_encoder", "unet", "vae_decoder"], normal.LoadTimes.Keys.Order());
        Assert.Equal(["unet"], lean.LoadTimes.Keys);
        var a = normal.Generate(request);
        var b = lean.Generate(request);
        for (int i = 0; i < 2; i++) Assert.Equal(a.Images[i], b.Images[i]);
        var img2img = request with { InitImage = a.Images[0], Strength = 0.5, Count = 1 };
        Assert.Equal(normal.Generate(img2img).Images[0], lean.Generate(img2img).Images[0]);
    }

    [Fact]
    public void SharedAllocatorGivesTheSameImage()
    {
        var request = new GenerationRequest { Prompt = "a red circle", Steps = 3, Scheduler = "ddim", Seed = 5, Width = 64, Height = 64 };
        using var own = StableDiffusionPipeline.Load(models.Folder());
        using var shared = StableDiffusionPipeline.Load(models.Folder(), EdgeDiffusion.Runtime.SessionSettings.Default with { SharedAllocator = true });
        Assert.Equal(own.Generate(request).Images[0], shared.Generate(request).Images[0]);
    }

    [Fact]
    public void PlannedShapesAndWarmUpGiveTheSameImage()
    {
        var request = new GenerationRequest { Prompt = "a blue square", Steps = 4, Scheduler = "ddim", Seed = 3, Width = 64, Height = 64 };
        using var plain = StableDiffusionPipeline.Load(models.Folder());
        using var planned = StableDiffusionPipeline.Load(models.Folder(), plan: GenerationPlan.For(request));
        Assert.Contains("unet warm-up", planned.LoadTimes.Keys);
        var a = plain.Generate(request).Images[0];
        var b = planned.Generate(request);
        Assert.Equal(4, b.Timings.DenoiserCalls); // the warm-up call is not counted as a step
        float max = a.Zip(b.Images[0], (x, y) => Math.Abs(x - y)).Max();
        Assert.True(max < 1e-4f, $"max difference {max}");
        // A session planned for 64×64 refuses another size with a clear error.
        Assert.ThrowsAny<EdgeDiffusionException>(() => planned.Generate(request with { Width = 128, Height = 128 }));
    }
}
