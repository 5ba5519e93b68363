// ImageGeneratorBuilder and AddImageGenerator are experimental in Microsoft.Extensions.AI 11 (MEAI001).
#pragma warning disable MEAI001

using EdgeDiffusion.Runtime;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeDiffusion.Integration;

/// <summary>Registers EdgeDiffusion with Microsoft.Extensions.DependencyInjection.</summary>
public static class EdgeDiffusionServiceCollectionExtensions
{
    /// <summary>
    /// Registers an <see cref="IImageGenerator"/> that loads <paramref name="modelFolder"/> when first resolved
    /// (<see cref="EdgeDiffusionImageGenerator(string, SessionSettings?)"/>) and is disposed, with its pipeline, by the
    /// container. Returns Microsoft.Extensions.AI's builder, so middleware (logging, OpenTelemetry, option defaults) can be
    /// added with <c>.Use…()</c>. The default lifetime is a singleton: one loaded model for the application.
    /// </summary>
    public static ImageGeneratorBuilder AddEdgeDiffusionImageGenerator(this IServiceCollection services, string modelFolder,
        SessionSettings? settings = null, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelFolder);
        return services.AddImageGenerator(_ => new EdgeDiffusionImageGenerator(modelFolder, settings), lifetime);
    }
}
