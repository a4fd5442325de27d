using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>Token ids of rendered conversations, which of them are trained on, and where each conversation starts.</summary>
/// <param name="Tokens">The conversations' token ids, one after the other.</param>
/// <param name="LossMask">Per token: whether predicting it is trained on (the assistant turns, their end-of-turn marker included).</param>
/// <param name="Starts">Where each conversation starts in <paramref name="Tokens"/>.</param>
/// <param name="Skipped">Conversations left out because their rendering did not split cleanly into prompt and answer.</param>
public sealed record ChatTokens(int[] Tokens, bool[] LossMask, int[] Starts, int Skipped);

/// <summary>
/// Renders conversations for training through a checkpoint's chat template with the library's own formatter
/// (<see cref="ChatSetup.CreateFormatter"/>, what <see cref="JambaChatClient"/> renders every request with), so the training
/// text is token for token what the client sends: for each assistant turn, the prompt the client would send for the
/// conversation up to it (generation prompt included), followed by the turn as the template renders it and its
/// end-of-turn marker. Only the assistant turns carry loss.
/// </summary>
public static class ChatCorpus
{
    /// <summary>Renders and encodes <paramref name="conversations"/>.</summary>
    /// <param name="setup">The chat setup (template and tokenizer) of the checkpoint being trained.</param>
    /// <param name="conversations">Conversations ending with an assistant turn.</param>
    public static ChatTokens Encode(ChatSetup setup, IEnumerable<SyntheticConversation> conversations)
    {
        ArgumentNullException.ThrowIfNull(setup);
        ArgumentNullException.ThrowIfNull(conversations);
        var formatter = setup.CreateFormatter();
        var tokens = new List<int>();
        var mask = new List<bool>();
        var starts = new List<int>();
        int skipped = 0;
        foreach (var c in conversations)
        {
            if (Render(setup, formatter, c) is not { } rendered)
            {
                skipped++;
                continue;
            }
            starts.Add(tokens.Count);
            tokens.AddRange(rendered.Tokens);
            mask.AddRange(rendered.Mask);
        }
        return new ChatTokens(tokens.ToArray(), mask.ToArray(), starts.ToArray(), skipped);
    }

    /// <summary>The text of one conversation and the character spans of its assistant turns, or null when the prompts of
    /// its turns are not prefixes of the whole rendering (which the formatter guarantees for the generated families).</summary>
    public static (string Text, List<(int Start, int End)> Targets)? RenderText(JambaChatFormatter formatter, SyntheticConversation conversation, IReadOnlyList<int>? endOfTurnIds = null, string? endOfTurn = null)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        ArgumentNullException.ThrowIfNull(conversation);
        var messages = conversation.Messages;
        string full = formatter.Format(messages, conversation.Options).Text;
        string marker = endOfTurn ?? "<|eom|>";
        var targets = new List<(int, int)>();
        for (int k = 0; k < messages.Count; k++)
        {
            if (messages[k].Role != ChatRole.Assistant) continue;
            string prompt = formatter.Format(messages.Take(k), conversation.Options).Text;
            if (!full.StartsWith(prompt, StringComparison.Ordinal)) return null;
            int end = full.IndexOf(marker, prompt.Length, StringComparison.Ordinal);
            if (end < 0) return null;
            targets.Add((prompt.Length, end + marker.Length));
        }
        if (targets.Count == 0) return null;
        return (full[..targets[^1].Item2], targets);
    }

    private static (List<int> Tokens, List<bool> Mask)? Render(ChatSetup setup, JambaChatFormatter formatter, SyntheticConversation c)
    {
        var tok = setup.Tokenizer;
        string? marker = setup.EndOfTurnTokenIds.Count > 0 ? tok.IdToToken(setup.EndOfTurnTokenIds[0]) : setup.EndOfTurnStrings.FirstOrDefault();
        if (RenderText(formatter, c, null, marker) is not var (text, targets)) return null;
        var ids = tok.Encode(text, addSpecialTokens: false).ToList();
        var mask = new bool[ids.Count];
        foreach (var (start, end) in targets)
        {
            // The token boundaries of the prompt and of the prompt plus the turn must be those of the whole text.
            var a = tok.Encode(text[..start], addSpecialTokens: false);
            var b = tok.Encode(text[..end], addSpecialTokens: false);
            if (!IsPrefix(a, ids) || !IsPrefix(b, ids) || b.Count <= a.Count) return null;
            for (int i = a.Count; i < b.Count; i++) mask[i] = true;
        }
        return (ids, mask.ToList());
    }

    private static bool IsPrefix(IReadOnlyList<int> prefix, List<int> all)
    {
        if (prefix.Count > all.Count) return false;
        for (int i = 0; i < prefix.Count; i++) if (prefix[i] != all[i]) return false;
        return true;
    }
}
