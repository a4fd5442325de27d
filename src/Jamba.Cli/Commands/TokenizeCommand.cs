using System.ComponentModel;
using System.Globalization;
using System.Text.Json.Nodes;
using Jamba.Cli.Infrastructure;
using Jamba.Inference.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Jamba.Cli.Commands;

internal sealed class TokenizeSettings : CommandSettings
{
    [CommandOption("-m|--model <FOLDER>")]
    [Description("Checkpoint folder with tokenizer.json or tokenizer.model. Default: $JAMBA_MODEL, else the shipped model.")]
    public string? Model { get; set; }

    [CommandOption("--text <TEXT>")]
    [Description("The text to tokenize.")]
    public string? Text { get; set; }

    [CommandOption("--no-special")]
    [Description("Do not add the tokenizer's special tokens (BOS) around the text.")]
    public bool NoSpecial { get; set; }

    [CommandOption("--json")]
    [Description("Print one JSON object: ids, pieces, count.")]
    public bool Json { get; set; }

    public override ValidationResult Validate() =>
        Text is null ? ValidationResult.Error("--text TEXT is required.") : ValidationResult.Success();
}

/// <summary><c>jamba tokenize</c>: ids and pieces of a text (reads the tokenizer files only).</summary>
internal sealed class TokenizeCommand(CliIO io) : Command<TokenizeSettings>
{
    public override int Execute(CommandContext context, TokenizeSettings settings, CancellationToken cancellationToken)
    {
        string path = ModelLocator.Resolve(settings.Model);
        if (!Directory.Exists(path)) throw new CliException($"no checkpoint folder at '{path}'.");
        var tokenizer = JambaTokenizer.Load(path);
        var ids = tokenizer.Encode(settings.Text!, addSpecialTokens: !settings.NoSpecial);
        var pieces = ids.Select(id => tokenizer.IdToToken(id) ?? "").ToList();
        if (settings.Json)
        {
            JsonOutput.Write(io, new JsonObject
            {
                ["ids"] = JsonOutput.Array(ids),
                ["pieces"] = JsonOutput.Array(pieces),
                ["count"] = ids.Count,
            });
            return ExitCodes.Success;
        }
        var table = new Table().Border(io.Interactive ? TableBorder.Rounded : TableBorder.Ascii)
            .AddColumn(new TableColumn("#").RightAligned()).AddColumn(new TableColumn("id").RightAligned()).AddColumn("piece");
        for (int i = 0; i < ids.Count; i++)
            table.AddRow(i.ToString(CultureInfo.InvariantCulture), ids[i].ToString(CultureInfo.InvariantCulture), Markup.Escape(Visible(pieces[i])));
        table.Caption($"{ids.Count} tokens");
        io.Console.Write(table);
        return ExitCodes.Success;
    }

    /// <summary>Shows control characters and spaces so that pieces can be told apart.</summary>
    private static string Visible(string piece) =>
        string.Concat(piece.Select(c => c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", ' ' => "␣", _ when char.IsControl(c) => $"\\x{(int)c:x2}", _ => c.ToString() }));
}
