using System.ComponentModel;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Generation;
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
}

/// <summary>
/// <c>jamba chat</c>: a conversation read line by line from stdin (so it can be scripted). Every turn re-renders the
/// whole conversation through the chat template; the engine's automatic prefix reuse makes the repeated part cheap.
/// <c>/reset</c> starts over, <c>/exit</c> (or end of input) leaves.
/// </summary>
internal sealed class ChatCommand(CliIO io) : AsyncCommand<ChatSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, ChatSettings settings, CancellationToken cancellationToken)
    {
        string path = ModelLocator.Resolve(settings.Model);
        // Prefix reuse from the second turn on: keep every prompt of a few tokens and more.
        var engine = new Inference.Engine.EngineOptions { PrefixCacheMinTokens = 16 };
        var (handle, _) = await ModelLoading.LoadAsync(io, settings, path, engine, cancellationToken).ConfigureAwait(false);
        await using var _h = handle.ConfigureAwait(false);
        var tokenizer = GenerateCommand.RequireTokenizer(handle);
        var options = settings.GenerationOptions();
        options.IncludeSpecialTokensInText = false;

        if (io.Interactive)
            io.Console.MarkupLine($"[grey]Chatting with {Markup.Escape(handle.ModelId)}. /reset starts over, /exit leaves.[/]");
        var messages = NewConversation(settings.System);
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
                messages = NewConversation(settings.System);
                io.Error.WriteLine("(conversation reset)");
                continue;
            }
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = line });
            var prompt = ChatPrompt.Encode(handle.Path, tokenizer, messages);
            var outcome = await Generation.RunAsync(io, handle, prompt, options, streamText: true, cancellationToken).ConfigureAwait(false);
            messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = outcome.Text.Trim() });
            if (settings.Stats) io.Error.WriteLine(outcome.StatsLine());
            if (outcome.FinishReason == FinishReason.Cancelled) return ExitCodes.Cancelled;
        }
        return ExitCodes.Success;
    }

    /// <summary>Reads a line on a worker thread (the console's reader blocks and ignores cancellation) so that Ctrl+C at the prompt ends the chat.</summary>
    private static async Task<string?> ReadLineAsync(TextReader reader, CancellationToken cancellationToken)
    {
        var read = Task.Run(reader.ReadLine, CancellationToken.None);
        var done = await Task.WhenAny(read, Task.Delay(Timeout.Infinite, cancellationToken)).ConfigureAwait(false);
        if (done != read) throw new OperationCanceledException(cancellationToken);
        return await read.ConfigureAwait(false);
    }

    private static JsonArray NewConversation(string? system)
    {
        var messages = new JsonArray();
        if (system is not null) messages.Add(new JsonObject { ["role"] = "system", ["content"] = system });
        return messages;
    }
}
