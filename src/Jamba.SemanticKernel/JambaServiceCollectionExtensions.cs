using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Jamba.Remote;
using Jamba.SemanticKernel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.TextGeneration;

namespace Microsoft.SemanticKernel;

/// <summary>
/// Registers Jamba models with a service collection: local checkpoints (a model folder) or models served over the OpenAI
/// protocol by <c>jamba serve</c> or vLLM (an endpoint; same application code, one setting changed). Local ones Services are keyed by <c>serviceId</c> (null: not keyed)
/// load their checkpoint on first use through <see cref="JambaModelRegistry.Shared"/>, so every registration of
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
    /// Adds a <see cref="JambaChatCompletionService"/> for a model served at <paramref name="endpoint"/> (<c>jamba serve</c>,
    /// vLLM) as <see cref="IChatCompletionService"/> and <see cref="ITextGenerationService"/>: a
    /// <see cref="RemoteJambaChatClient"/> (the official OpenAI client plus Jamba's documents, template variables, tool-call
    /// and reasoning parsing) under SK's function invocation. Settings (<see cref="JambaPromptExecutionSettings"/>) are the
    /// same as for a local model.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="endpoint">The server (<c>http://host:8000</c> or <c>…/v1</c>).</param>
    /// <param name="apiKey">The server's key, or null.</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Remote client settings.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddJambaChatCompletion(this IServiceCollection services, Uri endpoint, string? apiKey, string modelId, string? serviceId = null, RemoteJambaChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        var root = RemoteEndpoint.ApiRoot(endpoint);
        services.AddKeyedSingleton<IChatCompletionService>(serviceId, (sp, _) =>
        {
            var loggerFactory = sp.GetService<ILoggerFactory>();
            var client = RemoteJambaChatClient.Create(root, apiKey, modelId, options, loggerFactory?.CreateLogger<RemoteJambaChatClient>());
            return new JambaChatCompletionService(client, modelId, root, loggerFactory, sp);
        });
        services.AddKeyedSingleton<ITextGenerationService>(serviceId, (sp, key) => (ITextGenerationService)sp.GetRequiredKeyedService<IChatCompletionService>(key));
        return services;
    }

    /// <summary>
    /// Adds a Jamba <see cref="IChatClient"/> for a model served at <paramref name="endpoint"/>: the
    /// <see cref="RemoteJambaChatClient"/> with logging and SK's kernel function invocation (as the local overload builds it).
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="endpoint">The server (<c>http://host:8000</c> or <c>…/v1</c>).</param>
    /// <param name="apiKey">The server's key, or null.</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Remote client settings.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddJambaChatClient(this IServiceCollection services, Uri endpoint, string? apiKey, string modelId, string? serviceId = null, RemoteJambaChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        var root = RemoteEndpoint.ApiRoot(endpoint);
        return services.AddKeyedSingleton<IChatClient>(serviceId, (sp, _) =>
        {
            var loggerFactory = sp.GetService<ILoggerFactory>();
            var builder = RemoteJambaChatClient.Create(root, apiKey, modelId, options, loggerFactory?.CreateLogger<RemoteJambaChatClient>()).AsBuilder();
            if (loggerFactory is not null) builder.UseLogging(loggerFactory);
            return builder.UseKernelFunctionInvocation(loggerFactory).Build(sp);
        });
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

    /// <summary>Adds a Jamba chat completion service for a model served at <paramref name="endpoint"/> (see <see cref="JambaServiceCollectionExtensions"/>).</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="endpoint">The server.</param>
    /// <param name="apiKey">The server's key, or null.</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Remote client settings.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IKernelBuilder AddJambaChatCompletion(this IKernelBuilder builder, Uri endpoint, string? apiKey, string modelId, string? serviceId = null, RemoteJambaChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddJambaChatCompletion(endpoint, apiKey, modelId, serviceId, options);
        return builder;
    }

    /// <summary>Adds a Jamba <see cref="IChatClient"/> for a model served at <paramref name="endpoint"/> (with SK function invocation).</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="endpoint">The server.</param>
    /// <param name="apiKey">The server's key, or null.</param>
    /// <param name="modelId">The served model name.</param>
    /// <param name="serviceId">The service key, or null.</param>
    /// <param name="options">Remote client settings.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IKernelBuilder AddJambaChatClient(this IKernelBuilder builder, Uri endpoint, string? apiKey, string modelId, string? serviceId = null, RemoteJambaChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddJambaChatClient(endpoint, apiKey, modelId, serviceId, options);
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
