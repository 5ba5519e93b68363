using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>A model folder written once (by <paramref name="write"/>) for the tests that only read it.</summary>
public abstract class WrittenFolderFixture : IDisposable
{
    protected WrittenFolderFixture(string prefix, Func<string, IReadOnlyList<WrittenComponent>> write)
    {
        Folder = TestData.NewTempDir(prefix);
        Written = write(Folder);
    }

    public string Folder { get; }

    public IReadOnlyList<WrittenComponent> Written { get; }

    public string Model(string component) => Path.Combine(Folder, component, "model.onnx");

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

/// <summary>The tiny Stable Diffusion folder.</summary>
public sealed class TinyFolderFixture() : WrittenFolderFixture("edgediff-tiny", folder => StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Tiny, folder, Seed))
{
    public const ulong Seed = 42;
}
