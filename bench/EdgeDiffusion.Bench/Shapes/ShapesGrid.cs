using EdgeDiffusion.Imaging;
using EdgeDiffusion.Pipelines;

namespace EdgeDiffusion.Bench.Shapes;

/// <summary>The README's picture: the default model's output for a few captions, in one grid PNG (captions in its text chunk).</summary>
public static class ShapesGrid
{
    public static readonly string[] Captions =
    [
        "a red circle on a blue background", "a small yellow triangle at the top left", "two green squares on white",
        "a large black square in the center on a yellow background", "a purple circle at the bottom right on a green background",
        "an orange triangle on a black background", "a blue square at the top on a red background", "a white circle on a purple background",
    ];

    public static void Write(StableDiffusionPipeline pipeline, string path, double guidance)
    {
        var images = Captions.Select(caption =>
        {
            var result = pipeline.Generate(new GenerationRequest { Prompt = caption, Steps = 20, Guidance = guidance, Scheduler = "euler", Seed = 0, Width = pipeline.DefaultSize.Width, Height = pipeline.DefaultSize.Height });
            return ImageTensor.ToImage(result.Images[0], 1, 3, result.Height, result.Width, 0);
        }).ToList();
        ImageGrid.Write(path, images, columns: 4, spacing: 4, text: [new("captions", string.Join("\n", Captions))]);
        Console.WriteLine($"wrote {path}: {string.Join(" | ", Captions)}");
    }
}
