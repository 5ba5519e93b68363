using EdgeDiffusion.Bench.Shapes;
using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;
using EdgeDiffusion.Schedulers;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Gate;

/// <summary>
/// The picture gate for schedulers: every scheduler, at 8 and 20 steps, draws the held-out captions' colours on the
/// trained default model, judged by the shapes classifier (background and foreground colour; shape too at 20 steps).
/// Floors sit under the figures measured after the DDIM/PNDM fix (docs/benchmarks.md, "Picture gate"): DDIM drew noise
/// (x_0 clamped to ±1 on an Euler config) and PNDM a yellow circle or a purple smear (PLMS order 4) before it.
/// </summary>
[Collection(PictureGateCollection.Name)]
public sealed class SchedulerPictureTests(PictureGate gate, ITestOutputHelper output)
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in SchedulerFactory.Names)
            foreach (int steps in new[] { 8, 20 })
                data.Add(name, steps);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DrawsTheCaptionsColours(string scheduler, int steps)
    {
        var score = ShapesEvaluation.Run(gate.Float32, gate.Subset, gate.Seeds, steps, gate.Guidance, scheduler);
        output.WriteLine($"{scheduler} {steps} steps: {score}");
        foreach (var miss in score.Misses) output.WriteLine("  " + miss);
        Assert.True(score.Background >= 0.9, $"{scheduler}, {steps} steps: {score}");
        Assert.True(score.Color >= 0.9, $"{scheduler}, {steps} steps: {score}");
        if (steps >= 20) Assert.True(score.Shape >= 0.6, $"{scheduler}, {steps} steps: {score}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Img2ImgKeepsTheDrawnPictureAndItsColours(string scheduler, int steps)
    {
        // Each held-out picture drawn exactly, re-noised to strength 0.5 and denoised with its own caption: the colours
        // stay, and the picture stays close to the drawing (PSNR against it).
        var classifier = new ShapeClassifier(gate.Subset.Palette);
        int right = 0, total = 0;
        var psnr = new List<double>();
        foreach (var caption in gate.Subset.Captions)
        {
            var drawn = ShapeDrawing.Draw(gate.Subset, caption);
            var result = gate.Float32.Generate(new GenerationRequest
            {
                Prompt = caption.Caption, Steps = steps, Guidance = gate.Guidance, Scheduler = scheduler, Seed = 7,
                Width = drawn.Width, Height = drawn.Height, InitImage = ImageTensor.ToTensor(drawn), Strength = 0.5,
            });
            var image = ImageTensor.ToImage(result.Images[0], 1, 3, result.Height, result.Width, 0);
            var reading = classifier.Read(image.Pixels, image.Width, image.Height);
            total++;
            if (reading.Background == caption.Background && reading.Color == caption.Color) right++;
            psnr.Add(EdgeDiffusion.Bench.CompressionQualityBenchmark.Psnr(drawn, image));
        }
        output.WriteLine($"{scheduler} {steps} steps img2img 0.5: colours right {right}/{total}, PSNR against the drawing mean {psnr.Average():F1} dB, min {psnr.Min():F1}");
        Assert.True(right >= total - 1, $"{scheduler}, {steps} steps img2img: colours right in {right} of {total}");
        Assert.True(psnr.Average() >= 16, $"{scheduler}, {steps} steps img2img: mean PSNR against the drawing {psnr.Average():F1} dB");
    }
}
