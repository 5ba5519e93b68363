using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>One tiny folder written once for the tests that only read it.</summary>
public sealed class TinyFolderFixture : IDisposable
{
    public const ulong Seed = 42;

    public TinyFolderFixture()
    {
        Folder = TestData.NewTempDir("edgediff-tiny");
        Written = StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Tiny, Folder, Seed);
    }

    public string Folder { get; }

    public IReadOnlyList<WrittenComponent> Written { get; }

    public string Model(string component) => Path.Combine(Folder, component, "model.onnx");

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
