using System.Collections.ObjectModel;
using System.Runtime.CompilerServices;
using Jamba.Inference.Chat;
using Jamba.Inference.Engine;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Services;
using Microsoft.SemanticKernel.TextGeneration;
using TextContent = Microsoft.SemanticKernel.TextContent;

namespace Jamba.SemanticKernel;

/// <summary>
/// Semantic Kernel chat completion and text generation over a local Jamba model. It is SK's own bridge over an
/// <see cref="IChatClient"/>: the <see cref="JambaChatClient"/> wrapped in SK's kernel-function-invoking client
/// (<c>ChatClientBuilder.UseKernelFunctionInvocation</c>) and exposed through <c>AsChatCompletionService</c>, so
/// <see cref="FunctionChoiceBehavior.Auto"/> runs the tool loop with the kernel's plugins and auto-invocation filters.
/// Text generation sends the prompt as one user message through the chat template.
/// <see cref="Attributes"/> carry the model id and the checkpoint folder (as endpoint).
/// </summary>
public sealed class JambaChatCompletionService : IChatCompletionService, ITextGenerationService, IDisposable
{
    private readonly IChatClient _pipeline;
    private readonly IChatCompletionService _inner;
    private readonly JambaChatClient? _local;
    private readonly string _modelId;

    /// <summary>Creates the service over <paramref name="chatClient"/>; disposing the service disposes the client.</summary>
    /// <param name="chatClient">The Jamba chat client.</param>
    /// <param name="loggerFactory">Logs function invocations.</param>
    /// <param name="serviceProvider">Services for function invocation (optional).</param>
    public JambaChatCompletionService(JambaChatClient chatClient, ILoggerFactory? loggerFactory = null, IServiceProvider? serviceProvider = null)
        : this((IChatClient)chatClient, chatClient?.ModelId!, chatClient?.Metadata.ProviderUri, loggerFactory, serviceProvider)
    {
        _local = chatClient;
    }

    /// <summary>
    /// Creates the service over any Jamba <see cref="IChatClient"/>, e.g. a <see cref="Jamba.Remote.RemoteJambaChatClient"/> of a
    /// model served by <c>jamba serve</c> or vLLM; disposing the service disposes the client.
    /// </summary>
    /// <param name="chatClient">The chat client.</param>
    /// <param name="modelId">The model id reported in <see cref="Attributes"/>.</param>
    /// <param name="endpoint">The endpoint reported in <see cref="Attributes"/> (a server address or a checkpoint folder).</param>
    /// <param name="loggerFactory">Logs function invocations.</param>
    /// <param name="serviceProvider">Services for function invocation (optional).</param>
    public JambaChatCompletionService(IChatClient chatClient, string modelId, Uri? endpoint = null, ILoggerFactory? loggerFactory = null, IServiceProvider? serviceProvider = null)
    {
        ArgumentNullException.ThrowIfNull(chatClient);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        Client = chatClient;
        _local = chatClient as JambaChatClient;
        _modelId = modelId;
        _pipeline = chatClient.AsBuilder().UseKernelFunctionInvocation(loggerFactory).Build(serviceProvider);
        _inner = _pipeline.AsChatCompletionService(serviceProvider);
        var attributes = new Dictionary<string, object?> { [AIServiceExtensions.ModelIdKey] = modelId };
        if (endpoint is { } uri) attributes[AIServiceExtensions.EndpointKey] = uri.ToString();
        Attributes = new ReadOnlyDictionary<string, object?>(attributes);
    }

    /// <summary>
    /// Creates the service for the checkpoint in <paramref name="modelPath"/>, loaded on first use and shared through
    /// <see cref="JambaModelRegistry.Shared"/> with every other client of the same path, device and dtype.
    /// </summary>
    /// <param name="modelPath">The checkpoint folder (with tokenizer files; the chat template is read from it).</param>
    /// <param name="options">Chat client settings.</param>
    /// <param name="loadOptions">Device, dtype and engine limits.</param>
    /// <param name="loggerFactory">Logging.</param>
    public JambaChatCompletionService(string modelPath, JambaChatClientOptions? options = null, ModelLoadOptions? loadOptions = null, ILoggerFactory? loggerFactory = null)
        : this(JambaChatClient.Create(modelPath, options, loadOptions, loggerFactory?.CreateLogger<JambaChatClient>()), loggerFactory)
    {
    }

    /// <summary>The underlying in-process chat client (without function invocation).</summary>
    /// <exception cref="InvalidOperationException">The service talks to a remote server (see <see cref="Client"/>).</exception>
    public JambaChatClient ChatClient => _local ?? throw new InvalidOperationException("This Jamba service talks to a remote server; it has no in-process JambaChatClient (see Client).");

    /// <summary>The underlying chat client (without function invocation): a <see cref="JambaChatClient"/> in-process, a
    /// <see cref="Jamba.Remote.RemoteJambaChatClient"/> for a served model.</summary>
    public IChatClient Client { get; }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, object?> Attributes { get; }

    /// <inheritdoc />
    /// <remarks>Function calls the model makes (returned when auto-invocation is off) name their plugin and function apart
    /// (<see cref="Microsoft.SemanticKernel.FunctionCallContent.PluginName"/>, <see cref="Microsoft.SemanticKernel.FunctionCallContent.FunctionName"/>) as SK's own connectors
    /// do; <c>Metadata["Usage"]</c> is a <see cref="UsageDetails"/>; <c>InnerContent</c> is the engine's final update.</remarks>
    public async Task<IReadOnlyList<ChatMessageContent>> GetChatMessageContentsAsync(ChatHistory chatHistory, PromptExecutionSettings? executionSettings = null, Kernel? kernel = null, CancellationToken cancellationToken = default)
    {
        var messages = await _inner.GetChatMessageContentsAsync(chatHistory, Convert(executionSettings), kernel, cancellationToken).ConfigureAwait(false);
        foreach (var message in messages) SplitFunctionNames(message.Items, kernel);
        return messages;
    }

    /// <inheritdoc />
    /// <remarks>The last update carries <c>Metadata["Usage"]</c> as a <see cref="UsageDetails"/> (as the non-streaming call does);
    /// every update's <c>InnerContent</c> is the engine's update it came from.</remarks>
    public async IAsyncEnumerable<StreamingChatMessageContent> GetStreamingChatMessageContentsAsync(ChatHistory chatHistory, PromptExecutionSettings? executionSettings = null, Kernel? kernel = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var update in _inner.GetStreamingChatMessageContentsAsync(chatHistory, Convert(executionSettings), kernel, cancellationToken).ConfigureAwait(false))
        {
            if (update.Metadata is { } metadata && metadata.TryGetValue("Usage", out var usage) && usage is UsageContent content)
                update.Metadata = new Dictionary<string, object?>(metadata) { ["Usage"] = content.Details };
            SplitFunctionNames(update.Items, kernel);
            yield return update;
        }
    }

    /// <summary>SK names a kernel function <c>Plugin_function</c> for the model; a call coming back is split into plugin and
    /// function (when the kernel has that plugin, or the name has the separator and no kernel is given).</summary>
    private static void SplitFunctionNames<T>(IList<T> items, Kernel? kernel) where T : class
    {
        for (int i = 0; i < items.Count; i++)
        {
            switch (items[i])
            {
                case Microsoft.SemanticKernel.FunctionCallContent call when string.IsNullOrEmpty(call.PluginName) && Split(call.FunctionName, kernel) is var (plugin, function):
                    items[i] = (T)(object)new Microsoft.SemanticKernel.FunctionCallContent(function, plugin, call.Id, call.Arguments) { InnerContent = call.InnerContent, Metadata = call.Metadata, ModelId = call.ModelId };
                    break;
            }
        }
    }

    private static (string Plugin, string Function)? Split(string name, Kernel? kernel)
    {
        int at = name.IndexOf('_');
        if (at <= 0 || at == name.Length - 1) return null;
        string plugin = name[..at], function = name[(at + 1)..];
        if (kernel is not null && !kernel.Plugins.TryGetFunction(plugin, function, out _)) return null;
        return (plugin, function);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TextContent>> GetTextContentsAsync(string prompt, PromptExecutionSettings? executionSettings = null, Kernel? kernel = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var history = new ChatHistory();
        history.AddUserMessage(prompt);
        var messages = await GetChatMessageContentsAsync(history, executionSettings, kernel, cancellationToken).ConfigureAwait(false);
        return messages.Select(m => new TextContent(m.Content, m.ModelId ?? _modelId, m.InnerContent, m.Encoding, m.Metadata)).ToList();
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<StreamingTextContent> GetStreamingTextContentsAsync(string prompt, PromptExecutionSettings? executionSettings = null, Kernel? kernel = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var history = new ChatHistory();
        history.AddUserMessage(prompt);
        await foreach (var update in GetStreamingChatMessageContentsAsync(history, executionSettings, kernel, cancellationToken).ConfigureAwait(false))
            yield return new StreamingTextContent(update.Content, update.ChoiceIndex, update.ModelId ?? _modelId, update.InnerContent, update.Encoding, update.Metadata);
    }

    /// <summary>Disposes the chat client (releasing its model lease when it owns one).</summary>
    public void Dispose() => _pipeline.Dispose();

    /// <summary>Jamba settings for SK's chat bridge, checked first so that a wrong value is named as the user wrote it
    /// (<c>max_tokens</c>, not the engine's property).</summary>
    private static PromptExecutionSettings? Convert(PromptExecutionSettings? settings)
    {
        if (settings is null) return null;
        var jamba = JambaPromptExecutionSettings.FromExecutionSettings(settings);
        jamba.Validate();
        return jamba;
    }
}
