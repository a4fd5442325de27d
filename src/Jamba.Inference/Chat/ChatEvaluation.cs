using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>Greedy success on held-out synthetic conversations, per family.</summary>
/// <param name="Family">The family (<see cref="SyntheticConversation.Kind"/>).</param>
/// <param name="Total">Conversations evaluated.</param>
/// <param name="Passed">Conversations whose greedy answer passed.</param>
/// <param name="Example">One failed answer (or null when none failed), for the log.</param>
public sealed record ChatEvaluationRow(string Family, int Total, int Passed, string? Example)
{
    /// <summary>Passed / Total.</summary>
    public double Rate => Total == 0 ? double.NaN : (double)Passed / Total;
}

/// <summary>
/// Runs a chat client greedily on conversations without their last assistant turn and checks the answer: a tool call must
/// have the expected function names and arguments; a document answer must contain the expected verbatim quote; the other
/// families must match the expected text exactly.
/// </summary>
public static class ChatEvaluation
{
    /// <summary>Evaluates <paramref name="client"/> on <paramref name="conversations"/>.</summary>
    public static async Task<List<ChatEvaluationRow>> RunAsync(IChatClient client, IEnumerable<SyntheticConversation> conversations, int maxOutputTokens = 96, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(conversations);
        var rows = new Dictionary<string, (int Total, int Passed, string? Example)>();
        foreach (var c in conversations)
        {
            var options = c.Options.Clone();
            options.Temperature = 0;
            options.MaxOutputTokens = maxOutputTokens;
            var response = await client.GetResponseAsync(c.Messages.Take(c.Messages.Count - 1), options, cancellationToken).ConfigureAwait(false);
            var (ok, shown) = Check(c, response);
            var r = rows.GetValueOrDefault(c.Kind);
            rows[c.Kind] = (r.Total + 1, r.Passed + (ok ? 1 : 0), r.Example ?? (ok ? null : $"expected {c.Expected} | got {shown}"));
        }
        return rows.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new ChatEvaluationRow(kv.Key, kv.Value.Total, kv.Value.Passed, kv.Value.Example)).ToList();
    }

    /// <summary>Whether <paramref name="response"/> answers <paramref name="conversation"/> (see the class remarks), and what it said.</summary>
    public static (bool Passed, string Shown) Check(SyntheticConversation conversation, ChatResponse response)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentNullException.ThrowIfNull(response);
        var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
        string text = response.Text.Trim();
        string shown = calls.Count > 0 ? string.Join("\n", calls.Select(Describe)) : text;
        var expected = conversation.Messages[^1];
        switch (conversation.Kind)
        {
            case "tool_call":
            {
                var want = expected.Contents.OfType<FunctionCallContent>().ToList();
                bool ok = want.Count == calls.Count && want.Zip(calls).All(p => p.First.Name == p.Second.Name && SameArguments(p.First.Arguments, p.Second.Arguments));
                return (ok, shown);
            }
            case "document":
                return (calls.Count == 0 && text.Contains(conversation.Expected, StringComparison.Ordinal), shown);
            default:
                return (calls.Count == 0 && text == conversation.Expected.Trim(), shown);
        }
    }

    private static string Describe(FunctionCallContent call) => call.Name + "(" + JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions) + ")";

    private static bool SameArguments(IDictionary<string, object?>? a, IDictionary<string, object?>? b)
    {
        a ??= new Dictionary<string, object?>();
        b ??= new Dictionary<string, object?>();
        if (a.Count != b.Count) return false;
        foreach (var (key, value) in a)
            if (!b.TryGetValue(key, out var other) || Normal(value) != Normal(other)) return false;
        return true;
    }

    private static string Normal(object? value) => value switch
    {
        null => "null",
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        JsonElement e => e.GetRawText(),
        string s => s,
        _ => JsonSerializer.Serialize(value, AIJsonUtilities.DefaultOptions).Trim('"'),
    };
}
