// IImageGenerator and its request/response types are experimental in Microsoft.Extensions.AI 11 (MEAI001).
#pragma warning disable MEAI001

using System.Diagnostics;
using System.Drawing;
using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Integration;
using EdgeDiffusion.Pipelines;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeDiffusion.Tests.Integration;

/// <summary>The shipped tiny-shapes model loaded once behind the IImageGenerator for the tests of this class.</summary>
public sealed class TinyShapesGenerator : IDisposable
{
    public static string Model => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes");

    public EdgeDiffusionImageGenerator Generator { get; } = new(Model);

    public void Dispose() => Generator.Dispose();
}

public sealed class EdgeDiffusionImageGeneratorTests(TinyShapesGenerator fixture) : IClassFixture<TinyShapesGenerator>
{
    private readonly IImageGenerator _generator = fixture.Generator;

    [Fact]
    public async Task GeneratesPngsOfTheRequestedSizeShowingTheCaptionsColours()
    {
        const string caption = "a red circle on a blue background";
        var options = new ImageGenerationOptions
        {
            Count = 2,
            ImageSize = new Size(64, 64),
            AdditionalProperties = new AdditionalPropertiesDictionary { ["steps"] = 20, ["seed"] = "7", ["scheduler"] = "euler" },
        };
        var response = await _generator.GenerateAsync(new ImageGenerationRequest(caption), options);

        Assert.Equal(2, response.Contents.Count);
        Assert.IsType<GenerationResult>(response.RawRepresentation);
        var set = HeldOutSet.Load(Path.Combine(TinyShapesGenerator.Model, "evaluation", "heldout.json"));
        var classifier = new ShapeClassifier(set.Palette);
        for (int i = 0; i < 2; i++)
        {
            var png = Assert.IsType<DataContent>(response.Contents[i]);
            Assert.Equal("image/png", png.MediaType);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], png.Data[..8].ToArray());
            Assert.Equal(7UL + (ulong)i, png.AdditionalProperties?["seed"]);
            Assert.StartsWith("data:image/png;base64,", png.Uri);

            byte[] bytes = png.Data.ToArray();
            var image = RgbaImage.Decode(bytes);
            Assert.Equal((64, 64), (image.Width, image.Height));
            string parameters = PngText.Parse(bytes).Single(t => t.Keyword == PngWriter.ParametersKeyword).Text;
            Assert.Equal($"{caption}\nSteps: 20, Sampler: euler, CFG scale: 3, Seed: {7 + i}, Size: 64x64, Model: tiny-shapes", parameters);

            var reading = classifier.Read(image.Pixels, image.Width, image.Height);
            Assert.Equal("blue", reading.Background);
            Assert.Equal("red", reading.Color);
        }
    }

    [Fact]
    public async Task TheSamePictureAsThePipelineGivesForTheMappedRequest()
    {
        var options = new ImageGenerationOptions { AdditionalProperties = new() { ["seed"] = 3L, ["steps"] = 8, ["guidance"] = 2.5, ["rng"] = "torch", ["negative_prompt"] = "green" } };
        var request = new ImageGenerationRequest("a yellow square on a black background");
        var mapped = fixture.Generator.ToGenerationRequest(request, options);
        Assert.Equal((3UL, 8, 2.5, "torch", "green", 64, 64, 1), (mapped.Seed, mapped.Steps, mapped.Guidance, mapped.Noise, mapped.NegativePrompt, mapped.Width, mapped.Height, mapped.Count));

        var response = await _generator.GenerateAsync(request, options);
        var direct = fixture.Generator.Pipeline.Generate(mapped);
        var expected = ImageTensor.ToImage(direct.Images[0], 1, 3, 64, 64, 0).Pixels;
        Assert.Equal(expected, RgbaImage.Decode(((DataContent)response.Contents[0]).Data.ToArray()).Pixels);
    }

    [Fact]
    public async Task ACancelledTokenThrowsOperationCanceled()
    {
        var request = new ImageGenerationRequest("a red circle on a blue background");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _generator.GenerateAsync(request, null, new CancellationToken(true)));

        // Cancelled while denoising: the pipeline checks the token between steps, so a long run stops early. The token is
        // cancelled from step 5's progress report, not by a timer, whose callback a busy thread pool can delay past the run.
        using var cancel = new CancellationTokenSource();
        var generation = new GenerationRequest { Prompt = "a red circle on a blue background", Steps = 1000, Width = 64, Height = 64 };
        int lastStep = 0;
        var watch = Stopwatch.StartNew();
        var run = ((EdgeDiffusionImageGenerator)_generator).GenerateAsync(generation, p => { lastStep = p.Step; if (p.Step == 5) cancel.Cancel(); }, cancel.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.InRange(lastStep, 5, 6);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"cancellation took {watch.Elapsed}");
    }

    [Theory]
    [InlineData("steps", "abc", "steps: \"abc\" is not an integer")]
    [InlineData("steps", 1.5, "steps: 1.5 is not an integer")]
    [InlineData("guidance", "lots", "guidance: \"lots\" is not a number")]
    [InlineData("seed", -1, "seed: -1 is not an integer from 0")]
    [InlineData("scheduler", "warp", "scheduler: \"warp\" is not a scheduler; use one of euler, euler-a, ddim")]
    [InlineData("rng", "philox", "rng: \"philox\" is not a noise source; use one of edgediff, torch, numpy")]
    [InlineData("steps", 0, "steps: 0 is out of range; use 1 to 1000")]
    [InlineData("negative_prompt", 5, "negative_prompt: 5 is not a string")]
    public async Task BadAdditionalPropertiesAreArgumentExceptionsNamingTheProperty(string key, object value, string message)
    {
        var options = new ImageGenerationOptions { AdditionalProperties = new() { [key] = value } };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(new ImageGenerationRequest("a red circle"), options));
        Assert.Equal(key, e.ParamName);
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public async Task BadOptionsAreRejectedBeforeAnyWork()
    {
        var request = new ImageGenerationRequest("a red circle");
        var size = await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(request, new ImageGenerationOptions { ImageSize = new Size(60, 64) }));
        Assert.Equal("ImageSize", size.ParamName);
        var count = await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(request, new ImageGenerationOptions { Count = 0 }));
        Assert.Equal("Count", count.ParamName);
        await Assert.ThrowsAsync<NotSupportedException>(() => _generator.GenerateAsync(request, new ImageGenerationOptions { MediaType = "image/jpeg" }));
        await Assert.ThrowsAsync<NotSupportedException>(() => _generator.GenerateAsync(request, new ImageGenerationOptions { ResponseFormat = ImageGenerationResponseFormat.Hosted }));
        await Assert.ThrowsAsync<ArgumentException>(() => _generator.GenerateAsync(new ImageGenerationRequest(""), null));
    }

    [Fact]
    public void GetServiceGivesTheMetadataThePipelineAndItself()
    {
        var metadata = _generator.GetService<ImageGeneratorMetadata>();
        Assert.Equal(("edgediffusion", "tiny-shapes"), (metadata?.ProviderName, metadata?.DefaultModelId));
        Assert.Same(fixture.Generator.Pipeline, _generator.GetService<StableDiffusionPipeline>());
        Assert.Same(_generator, _generator.GetService<EdgeDiffusionImageGenerator>());
        Assert.Null(_generator.GetService<ImageGeneratorMetadata>("some key"));
        Assert.Null(_generator.GetService<string>());
    }

    [Fact]
    public void AddEdgeDiffusionImageGeneratorRegistersASingletonThatLoadsTheFolder()
    {
        var services = new ServiceCollection();
        services.AddEdgeDiffusionImageGenerator(TinyShapesGenerator.Model);
        var descriptor = Assert.Single(services, d => d.ServiceType == typeof(IImageGenerator));
        Assert.Equal(ServiceLifetime.Singleton, descriptor.Lifetime);
        using var generator = Assert.IsType<EdgeDiffusionImageGenerator>(descriptor.ImplementationFactory!(new NoServices()));
        Assert.Equal("tiny-shapes", generator.Pipeline.Name);
        Assert.Equal(3, generator.DefaultGuidance);
    }

    private sealed class NoServices : IServiceProvider
    {
        public object? GetService(Type serviceType) => null;
    }
}
