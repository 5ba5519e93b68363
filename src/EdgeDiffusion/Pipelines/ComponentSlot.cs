namespace EdgeDiffusion.Pipelines;

/// <summary>
/// One pipeline component, either kept loaded or, in low-memory mode, created for each use and disposed right after
/// (Apple's reduceMemory: only the UNet stays resident during the denoising loop).
/// </summary>
internal sealed class ComponentSlot<T>(Func<T> create, bool keepLoaded) : IDisposable where T : class, IDisposable
{
    private T? _instance;

    public static ComponentSlot<T> Loaded(T instance) => new(() => instance, keepLoaded: true) { _instance = instance };

    public bool IsLoaded => _instance is not null;

    public T Acquire() => _instance ??= create();

    /// <summary>Ends a use: disposes the component unless it is kept loaded.</summary>
    public void Release()
    {
        if (keepLoaded || _instance is null) return;
        _instance.Dispose();
        _instance = null;
    }

    public void Dispose()
    {
        _instance?.Dispose();
        _instance = null;
    }
}
