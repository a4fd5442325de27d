using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Chat;
using Microsoft.Extensions.AI;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Commands;

internal sealed class ChatSettings : SamplingSettings
{
    [CommandOption("--system <TEXT>")]
    [Description("A system message at the start of the conversation.")]
    public string? System { get; set; }

    [CommandOption("--stats")]
    [Description("Print token counts and speeds after each reply (to stderr).")]
    public bool Stats { get; set; }

    [CommandOption("--tools <FILE>")]
    [Description("Offer tools to the model: a JSON array of function definitions {name, description, parameters (JSON schema)}. Calls are printed as [[tool call]] lines, not run.")]
    public string? Tools { get; set; }

    [CommandOption("--documents <FILE>")]
    [Description("Documents for the model to answer from: a JSON array of strings or {title, text} objects.")]
    public string? Documents { get; set; }
}

/// <summary>
/// <c>jamba chat</c>: a conversation read line by line from stdin (so it can be scripted), run on
/// <see cref="JambaChatClient"/> over the loaded model: the checkpoint's chat template (through the model's
/// <see cref="ChatSetup"/>), replies that end at the template's end-of-turn marker, tool calls and reasoning parsed out of
/// the output. Every turn re-renders the whole conversation; the engine's automatic prefix reuse makes the repeated part
/// cheap. <c>/reset</c> starts over, <c>/exit</c> (or end of input) leaves.
/// </summary>
internal sealed class ChatCommand(CliIO io) : AsyncCommand<ChatSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ChatSettings settings, CancellationToken cancellationToken)
    {
        string path = ModelLocator.Resolve(settings.Model);
        // The files are read before the model is loaded, so that a mistake in them is reported at once.
        var tools = settings.Tools is null ? null : ChatInputFiles.ReadTools(settings.Tools);
        var documents = settings.Documents is null ? null : ChatInputFiles.ReadDocuments(settings.Documents);

        // Prefix reuse from the second turn on: keep every prompt of a few tokens and more.
        var engine = new Inference.Engine.EngineOptions { PrefixCacheMinTokens = 16 };
        var (handle, _) = await ModelLoading.LoadAsync(io, settings, path, engine, cancellationToken).ConfigureAwait(false);
        await using var _h = handle.ConfigureAwait(false);
        if (handle.Tokenizer is null)
            throw new CliException($"the checkpoint '{handle.Path}' has no tokenizer files (tokenizer.json or tokenizer.model); chat needs one.");

        using var client = new JambaChatClient(handle, new JambaChatClientOptions { DefaultGenerationOptions = settings.GenerationOptions() });
        ChatOptions? options = null;
        if (tools is { Count: > 0 }) (options ??= new ChatOptions()).Tools = tools;
        if (documents is { Count: > 0 }) (options ??= new ChatOptions()).WithDocuments(documents);

        if (io.Interactive)
        {
            io.Console.MarkupLine($"[grey]Chatting with {Markup.Escape(handle.ModelId)} ({Parsing.ShortName(handle.DType)} on {Markup.Escape(handle.Device)}). /reset starts over, /exit leaves.[/]");
            if (tools is { Count: > 0 })
                io.Console.MarkupLine($"[grey]Tools offered: {Markup.Escape(string.Join(", ", tools.Select(t => t.Name)))} (calls are shown, not run).[/]");
            if (documents is { Count: > 0 })
                io.Console.MarkupLine($"[grey]{documents.Count} document{(documents.Count == 1 ? "" : "s")} in the prompt.[/]");
        }
        return await new ChatSession(io, client, options, settings.System, settings.Stats).RunAsync(cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>
/// The conversation loop of <c>jamba chat</c> over any <see cref="IChatClient"/>: reads user lines, streams each reply with
/// <see cref="ChatReplyWriter"/>, and keeps the whole conversation (replies with their reasoning and tool calls) as MEAI
/// messages.
/// </summary>
internal sealed class ChatSession(CliIO io, IChatClient client, ChatOptions? options, string? system, bool stats)
{
    /// <summary>The conversation so far.</summary>
    public List<ChatMessage> Messages { get; private set; } = NewConversation(system);

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            if (io.Interactive) io.Console.Markup("[bold green]> [/]");
            string? line = await ReadLineAsync(io.In, cancellationToken).ConfigureAwait(false);
            if (line is null) break;
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line is "/exit" or "/quit") break;
            if (line == "/reset")
            {
                Messages = NewConversation(system);
                io.Error.WriteLine("(conversation reset)");
                continue;
            }
            Messages.Add(new ChatMessage(ChatRole.User, line));
            var updates = await ReplyAsync(cancellationToken).ConfigureAwait(false);
            // The reply joins the conversation as the client gave it: text, reasoning and tool calls (which are shown, not
            // run: the user's next line continues the conversation).
            Messages.AddRange(updates.ToChatResponse().Messages);
            if (stats && updates.Count > 0) io.Error.WriteLine(StatsLine(updates[^1]));
        }
        return cancellationToken.IsCancellationRequested ? ExitCodes.Cancelled : ExitCodes.Success;
    }

    private async Task<List<ChatResponseUpdate>> ReplyAsync(CancellationToken cancellationToken)
    {
        var writer = new ChatReplyWriter(io);
        var updates = new List<ChatResponseUpdate>();
        try
        {
            await foreach (var update in client.GetStreamingResponseAsync(Messages, options, cancellationToken).ConfigureAwait(false))
            {
                updates.Add(update);
                writer.Write(update);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            writer.Complete();
            throw;
        }
        writer.Complete();
        return updates;
    }

    /// <summary>The statistics line of a reply, from its final update: the <see cref="UsageContent"/>, the finish reason and
    /// the <c>prefill_seconds</c> / <c>decode_seconds</c> properties <see cref="JambaChatClient"/> reports.</summary>
    internal static string StatsLine(ChatResponseUpdate final)
    {
        var usage = final.Contents.OfType<UsageContent>().LastOrDefault()?.Details;
        double Seconds(string key) =>
            final.AdditionalProperties?.TryGetValue(key, out var v) == true && v is IConvertible c ? c.ToDouble(CultureInfo.InvariantCulture) : 0;
        return GenerationStats.Line(
            (int)(usage?.InputTokenCount ?? 0), (int)(usage?.CachedInputTokenCount ?? 0), (int)(usage?.OutputTokenCount ?? 0),
            Seconds("prefill_seconds"), Seconds("decode_seconds"), final.FinishReason?.Value ?? ChatFinishReason.Stop.Value);
    }

    /// <summary>Reads a line on a worker thread (the console's reader blocks and ignores cancellation) so that Ctrl+C at the prompt ends the chat.</summary>
    private static async Task<string?> ReadLineAsync(TextReader reader, CancellationToken cancellationToken)
    {
        var read = Task.Run(reader.ReadLine, CancellationToken.None);
        var done = await Task.WhenAny(read, Task.Delay(Timeout.Infinite, cancellationToken)).ConfigureAwait(false);
        if (done != read) throw new OperationCanceledException(cancellationToken);
        return await read.ConfigureAwait(false);
    }

    private static List<ChatMessage> NewConversation(string? system)
    {
        var messages = new List<ChatMessage>();
        if (system is not null) messages.Add(new ChatMessage(ChatRole.System, system));
        return messages;
    }
}

/// <summary>
/// Prints one streamed reply: its text on stdout as it arrives, each tool call on a line of its own on stdout
/// (<c>[tool call] name({"argument": …})</c>), reasoning on stderr after a <c>[reasoning] </c> prefix (so that stdout
/// holds the answer alone), and the cited documents, if any, on a last <c>[citations] …</c> line. The reply always ends
/// with a newline.
/// </summary>
internal sealed class ChatReplyWriter(CliIO io)
{
    public const string ToolCallPrefix = "[tool call] ";
    public const string ReasoningPrefix = "[reasoning] ";
    public const string CitationsPrefix = "[citations] ";

    private bool _lineOpen;
    private bool _wrote;
    private bool _reasoningOpen;
    private IReadOnlyList<JambaCitation> _citations = [];

    public void Write(ChatResponseUpdate update)
    {
        foreach (var content in update.Contents)
        {
            switch (content)
            {
                case TextReasoningContent r when !string.IsNullOrEmpty(r.Text):
                    if (!_reasoningOpen)
                    {
                        io.Error.Write(ReasoningPrefix);
                        _reasoningOpen = true;
                    }
                    io.Error.Write(r.Text);
                    io.Error.Flush();
                    break;
                case TextContent t when !string.IsNullOrEmpty(t.Text):
                    EndReasoning();
                    io.Out.Write(t.Text);
                    _lineOpen = _wrote = true;
                    break;
                case FunctionCallContent call:
                    EndReasoning();
                    if (_lineOpen) io.Out.WriteLine();
                    io.Out.WriteLine(FormatToolCall(call));
                    _lineOpen = false;
                    _wrote = true;
                    break;
            }
        }
        if (update.GetCitations() is { Count: > 0 } cited) _citations = cited;
        io.Out.Flush();
    }

    /// <summary>Ends the reply (also when it was interrupted).</summary>
    public void Complete()
    {
        EndReasoning();
        if (_lineOpen || !_wrote) io.Out.WriteLine();
        if (_citations.Count > 0)
            io.Out.WriteLine(CitationsPrefix + string.Join(", ", _citations.Select(c => c.Title is { Length: > 0 } title ? $"{c.DocumentIndex} ({title})" : c.DocumentIndex.ToString(CultureInfo.InvariantCulture))));
        _lineOpen = false;
        _wrote = true;
        io.Out.Flush();
        io.Error.Flush();
    }

    /// <summary><c>[tool call] name({"argument": value, …})</c>: the arguments as compact JSON.</summary>
    internal static string FormatToolCall(FunctionCallContent call) =>
        $"{ToolCallPrefix}{call.Name}({JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(), CompactJson.GetTypeInfo(typeof(IDictionary<string, object?>)))})";

    private static readonly JsonSerializerOptions CompactJson = new(AIJsonUtilities.DefaultOptions) { WriteIndented = false };

    private void EndReasoning()
    {
        if (!_reasoningOpen) return;
        io.Error.WriteLine();
        io.Error.Flush();
        _reasoningOpen = false;
    }
}
