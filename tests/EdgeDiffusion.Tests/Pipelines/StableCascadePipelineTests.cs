using EdgeDiffusion.Architectures;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Tests.Architectures;

namespace EdgeDiffusion.Tests.Pipelines;

/// <summary>
/// The Stable Cascade pipeline's mechanics on the random-weight cascade-tiny folder (shapes, stages, seeds, errors);
/// whether its pictures are right is judged on the trained models/tiny-cascade by the picture gate.
/// </summary>
public sealed class StableCascadePipelineTests(TinyCascadeFolderFixture tiny) : IClassFixture<TinyCascadeFolderFixture>
{
    [Fact]
    public void RunsEveryStageAndGivesPicturesOfTheAskedSize()
    {
        using var pipeline = StableCascadePipeline.Load(tiny.Folder);
        var progress = new List<StageProgress>();
        var result = pipeline.Generate(new CascadeRequest { Prompt = "a red circle", Seed = 3, Count = 2, PriorSteps = 3, DecoderSteps = 2 }, progress.Add);
        Assert.Equal(2, result.Images.Count);
        Assert.Equal(64, result.Width); // the folder's image_size
        Assert.All(result.Images, image =>
        {
            Assert.Equal(3 * 64 * 64, image.Length);
            Assert.All(image, v => Assert.InRange(v, -1f, 1f));
        });
        Assert.Equal([3, 2, 0], result.Stages.Select(s => s.Steps));
        Assert.Equal(3, result.Stages[0].Calls); // guided prior: one call per step with both halves
        Assert.Equal(["prior", "prior", "prior", "decoder", "decoder"], progress.Select(p => p.Stage));
        Assert.Equal([3UL, 4UL], result.Seeds);
    }

    [Fact]
    public void ImageIOfABatchEqualsASingleGenerationWithSeedPlusI()
    {
        using var pipeline = StableCascadePipeline.Load(tiny.Folder);
        var batch = pipeline.Generate(new CascadeRequest { Prompt = "a blue square", Seed = 10, Count = 2, PriorSteps = 2, DecoderSteps = 2 });
        var second = pipeline.Generate(new CascadeRequest { Prompt = "a blue square", Seed = 11, PriorSteps = 2, DecoderSteps = 2 });
        // Batched kernels may round differently from single-row ones: equal to float rounding, as the SD pipeline's test asks.
        float difference = batch.Images[1].Zip(second.Images[0], (a, b) => Math.Abs(a - b)).Max();
        Assert.True(difference < 1e-3f, $"image 1 of the batch differs from seed 11 alone by {difference}");
        Assert.True(batch.Images[0].Zip(batch.Images[1], (a, b) => Math.Abs(a - b)).Max() > 0.1f);
    }

    [Fact]
    public void MissingStageIsATypedErrorNamingTheFile()
    {
        string copy = TestData.NewTempDir("edgediff-cascade-broken");
        foreach (var dir in Directory.EnumerateDirectories(tiny.Folder))
        {
            if (Path.GetFileName(dir) == "decoder") continue;
            string target = Path.Combine(copy, Path.GetFileName(dir));
            Directory.CreateDirectory(target);
            foreach (var f in Directory.EnumerateFiles(dir)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        }
        File.Copy(Path.Combine(tiny.Folder, "model_index.json"), Path.Combine(copy, "model_index.json"));
        Assert.True(CascadeFolder.IsCascade(copy));
        var e = Assert.Throws<ModelFolderException>(() => CascadeFolder.Open(copy));
        Assert.Contains(Path.Combine("decoder", "model.onnx"), e.Message);
        Assert.Contains("decoder (Stage B)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Directory.Delete(copy, true);
    }

    [Fact]
    public void StagesOfDifferentWidthsAreRefusedAtLoad()
    {
        // A prior whose pooled width (48) differs from the text encoder's projection (32).
        string copy = TestData.NewTempDir("edgediff-cascade-mismatch");
        var wide = StableCascadeConfig.Tiny with
        {
            Prior = StableCascadeConfig.Tiny.Prior with { ClipTextPooledChannels = 48 },
            Decoder = StableCascadeConfig.Tiny.Decoder with { ClipTextPooledChannels = 48 },
            TextEncoder = StableCascadeConfig.Tiny.TextEncoder with { ProjectionDim = 48 },
        };
        StableCascadeArchitecture.WriteFolder(wide, copy, 1);
        File.Copy(tiny.Model("text_encoder"), Path.Combine(copy, "text_encoder", "model.onnx"), overwrite: true);
        var e = Assert.Throws<ModelFolderException>(() => StableCascadePipeline.Load(copy));
        Assert.Contains("clip_text_pooled takes 48 values but the text encoder's text_embeds has 32", e.Message);
        Assert.Contains(Path.Combine("prior", "model.onnx"), e.Message);
        Directory.Delete(copy, true);
    }

    [Fact]
    public void BadRequestsNameTheirOption()
    {
        using var pipeline = StableCascadePipeline.Load(tiny.Folder);
        Assert.Equal("--prior-steps", Assert.Throws<InvalidArgumentException>(() => pipeline.Generate(new CascadeRequest { Prompt = "x", PriorSteps = 0 })).Argument);
        Assert.Equal("--decoder-guidance", Assert.Throws<InvalidArgumentException>(() => pipeline.Generate(new CascadeRequest { Prompt = "x", DecoderGuidance = -1 })).Argument);
        Assert.Equal("--width", Assert.Throws<InvalidArgumentException>(() => pipeline.Generate(new CascadeRequest { Prompt = "x", Width = 30 })).Argument);
    }
}
