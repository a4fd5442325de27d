using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.SemanticKernel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.TextGeneration;

namespace Microsoft.SemanticKernel;

/// <summary>
/// Registers local Jamba models with a service collection. Services are keyed by <c>serviceId</c> (null: not keyed)
/// and load their checkpoint on first use through <see cref="JambaModelRegistry.Shared"/>, so every registration of
/// the same model path (with the same device and dtype) shares one loaded copy; each releases its lease when the
/// service provider is disposed.
/// </summary>
public static class JambaServiceCollectionExtensions
{
    /// <summary>
    /// Adds a <see cref="JambaChatCompletionService"/> as <see cref="IChatCompletionService"/> and
    /// <see cref="ITextGenerationService"/> (one instance for both).
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="modelPath">The checkpoint folder (config, weights, tokenizer; chat template).</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Chat client settings.</param>
    /// <param name="loadOptions">Device, dtype and engine limits.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddJambaChatCompletion(this IServiceCollection services, string modelPath, string? serviceId = null, JambaChatClientOptions? options = null, ModelLoadOptions? loadOptions = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        services.AddKeyedSingleton<IChatCompletionService>(serviceId, (sp, _) =>
        {
            var loggerFactory = sp.GetService<ILoggerFactory>();
            var client = JambaChatClient.Create(modelPath, options, loadOptions, loggerFactory?.CreateLogger<JambaChatClient>());
            return new JambaChatCompletionService(client, loggerFactory, sp);
        });
        services.AddKeyedSingleton<ITextGenerationService>(serviceId, (sp, key) => (ITextGenerationService)sp.GetRequiredKeyedService<IChatCompletionService>(key));
        return services;
    }

    /// <summary>
    /// Adds a Jamba <see cref="IChatClient"/>: the <see cref="JambaChatClient"/> with logging (when an
    /// <see cref="ILoggerFactory"/> is registered) and SK's kernel function invocation, as SK's own connectors build it.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="modelPath">The checkpoint folder.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Chat client settings.</param>
    /// <param name="loadOptions">Device, dtype and engine limits.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddJambaChatClient(this IServiceCollection services, string modelPath, string? serviceId = null, JambaChatClientOptions? options = null, ModelLoadOptions? loadOptions = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        return services.AddKeyedSingleton<IChatClient>(serviceId, (sp, _) =>
        {
            var loggerFactory = sp.GetService<ILoggerFactory>();
            var builder = JambaChatClient.Create(modelPath, options, loadOptions, loggerFactory?.CreateLogger<JambaChatClient>()).AsBuilder();
            if (loggerFactory is not null) builder.UseLogging(loggerFactory);
            return builder.UseKernelFunctionInvocation(loggerFactory).Build(sp);
        });
    }
}

/// <summary>Registers local Jamba models with a kernel builder (see <see cref="JambaServiceCollectionExtensions"/>).</summary>
public static class JambaKernelBuilderExtensions
{
    /// <summary>Adds a Jamba chat completion (and text generation) service.</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="modelPath">The checkpoint folder.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Chat client settings.</param>
    /// <param name="loadOptions">Device, dtype and engine limits.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IKernelBuilder AddJambaChatCompletion(this IKernelBuilder builder, string modelPath, string? serviceId = null, JambaChatClientOptions? options = null, ModelLoadOptions? loadOptions = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddJambaChatCompletion(modelPath, serviceId, options, loadOptions);
        return builder;
    }

    /// <summary>Adds a Jamba <see cref="IChatClient"/> (with SK function invocation).</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="modelPath">The checkpoint folder.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Chat client settings.</param>
    /// <param name="loadOptions">Device, dtype and engine limits.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IKernelBuilder AddJambaChatClient(this IKernelBuilder builder, string modelPath, string? serviceId = null, JambaChatClientOptions? options = null, ModelLoadOptions? loadOptions = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddJambaChatClient(modelPath, serviceId, options, loadOptions);
        return builder;
    }
}
