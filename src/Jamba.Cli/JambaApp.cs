using System.Reflection;
using Jamba.Cli.Commands;
using Jamba.Cli.Infrastructure;
using Jamba.Inference;
using Jamba.Inference.Caching;
using Jamba.Inference.Engine;
using Jamba.Inference.Templates;
using Jamba.Inference.Tokenization;
using Spectre.Console.Cli;

namespace Jamba.Cli;

/// <summary>The <c>jamba</c> command line: command registration and the mapping of failures to one-line messages and exit codes.</summary>
internal static class JambaApp
{
    /// <summary>Registers the commands. Adding one is one line here plus its command class.</summary>
    internal static void AddCommands(IConfigurator config)
    {
        config.AddCommand<GenerateCommand>("generate")
            .WithDescription("Generate a continuation of a prompt (text, or token ids for checkpoints without a tokenizer).")
            .WithExample("generate", "--prompt", "\"Call me Ishmael.\"", "--max-new-tokens", "64")
            .WithExample("generate", "--model", "path/to/checkpoint", "--prompt-ids", "1,2,3", "--temperature", "0", "--json");
        config.AddCommand<ChatCommand>("chat")
            .WithDescription("Interactive chat through the checkpoint's chat template, ending each reply at its end of turn (reads lines from stdin; /reset, /exit). "
                + "Tool calls (--tools) are shown as \"[[tool call]] name({arguments})\" lines on stdout, kept in the conversation, not run; reasoning goes to stderr after \"[[reasoning]]\".")
            .WithExample("chat", "--system", "\"Be brief.\"", "--tools", "tools.json", "--stats");
        config.AddCommand<InfoCommand>("info")
            .WithDescription("Show the architecture: layer schedule, parameters, cache sizes (reads config.json only).")
            .WithExample("info", "--context", "32768");
        config.AddCommand<TokenizeCommand>("tokenize")
            .WithDescription("Tokenize text and show the ids and pieces.")
            .WithExample("tokenize", "--text", "\"Call me Ishmael.\"");
        config.AddCommand<InitCommand>("init")
            .WithDescription("Write a random-weight checkpoint in Hugging Face layout from a config.json or a preset.")
            .WithExample("init", "--preset", "bench", "--out", "checkpoints/bench");
        config.AddCommand<BenchCommand>("bench")
            .WithDescription("Measure prefill and decode speed, concurrent streams, snapshot time-to-first-token and peak memory.")
            .WithExample("bench", "--preset", "bench", "--threads", "2", "--prompt-tokens", "512,2048", "--streams", "1,2,4,8,16");
        config.AddCommand<ServeCommand>("serve")
            .WithDescription("Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")
            .WithExample("serve", "--model", "path/to/checkpoint", "--port", "8000", "--api-key", "secret");
        config.AddCommand<TrainCommand>("train")
            .WithDescription("Train a small Jamba on a text corpus (AdamW, warm-up + cosine, clipping, validation; resumable) into a Hugging Face checkpoint.")
            .WithExample("train", "--corpus", "moby-dick.txt", "--tokenizer", "tokenizer.model", "--config", "config.json", "--out", "models/my-jamba");
    }

    /// <summary>Runs the command line and returns the exit code. Never throws (except for bugs in the error path itself).</summary>
    public static async Task<int> RunAsync(string[] args, CliIO io, CancellationToken cancellationToken = default)
    {
        var registrar = new TypeRegistrar();
        registrar.RegisterInstance(typeof(CliIO), io);
        var interceptor = new ExecutionInterceptor();
        var app = new CommandApp(registrar);
        app.Configure(config =>
        {
            config.SetApplicationName("jamba");
            config.SetApplicationVersion(typeof(JambaApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0");
            config.ConfigureConsole(io.Console);
            config.PropagateExceptions();
            config.UseStrictParsing();
            config.SetInterceptor(interceptor);
            AddCommands(config);
        });
        try
        {
            return await app.RunAsync(args, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var (code, message) = Classify(ex, interceptor.Executing, cancellationToken);
            if (message is not null)
            {
                io.Error.WriteLine($"error: {OneLine(message)}");
                if (Environment.GetEnvironmentVariable("JAMBA_DEBUG") is "1" or "true") io.Error.WriteLine(ex.ToString());
            }
            io.Out.Flush();
            io.Error.Flush();
            return code;
        }
    }

    /// <summary>Maps an exception to (exit code, message). Anything thrown before the command starts is a usage error.</summary>
    internal static (int Code, string? Message) Classify(Exception ex, bool executing, CancellationToken cancellationToken)
    {
        if (ex is AggregateException { InnerExceptions.Count: 1 } agg) ex = agg.InnerException!;
        if (ex is TargetInvocationException { InnerException: { } inner }) ex = inner;
        return ex switch
        {
            CliException cli => (cli.ExitCode, cli.Message),
            OperationCanceledException when cancellationToken.IsCancellationRequested => (ExitCodes.Cancelled, "cancelled."),
            CommandParseException or CommandRuntimeException => (ExitCodes.Usage, UsageMessage(ex.Message)),
            _ when !executing => (ExitCodes.Usage, ex.Message),
            JambaConfigException or JambaCheckpointException or JambaTokenizerException or SnapshotFormatException
                or TemplateException or FileNotFoundException or DirectoryNotFoundException => (ExitCodes.Failure, ex.Message),
            ContextLengthExceededException => (ExitCodes.Failure, ex.Message),
            IOException or UnauthorizedAccessException => (ExitCodes.Failure, ex.Message),
            _ => (ExitCodes.Failure, $"{ex.Message} ({ex.GetType().Name}; set JAMBA_DEBUG=1 for the stack trace)"),
        };
    }

    /// <summary>Spectre reports an option given without its value as a failed conversion of an internal name.</summary>
    private static string UsageMessage(string message) =>
        message.Contains("'__default_command'", StringComparison.Ordinal) ? $"an option is missing its value ({message.Replace("'__default_command'", "nothing", StringComparison.Ordinal)})" : message;

    internal static string OneLine(string message)
    {
        var line = string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return line.Length == 0 ? "failed." : line;
    }

    /// <summary>Notes when parsing and binding are over and the command itself runs.</summary>
    private sealed class ExecutionInterceptor : ICommandInterceptor
    {
        public bool Executing { get; private set; }

        public void Intercept(CommandContext context, CommandSettings settings) => Executing = true;

        public void InterceptResult(CommandContext context, CommandSettings settings, ref int result) { }
    }
}
