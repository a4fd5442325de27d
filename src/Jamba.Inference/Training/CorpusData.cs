using Jamba.Inference.Tokenization;

namespace Jamba.Inference.Training;

/// <summary>Turns a plain-text corpus into training and validation token streams.</summary>
public static class CorpusData
{
    /// <summary>Tokenizes <paramref name="text"/> paragraph by paragraph (BOS-free) and holds out the last
    /// <paramref name="validationFraction"/> of the paragraphs (a contiguous tail, so no text leaks across the split).</summary>
    public static (int[] Train, int[] Validation) Split(string text, JambaTokenizer tokenizer, double validationFraction = 0.05)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (validationFraction is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "must be in [0, 1).");
        var paragraphs = text.Replace("\r\n", "\n", StringComparison.Ordinal)
            .Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int cut = (int)Math.Round(paragraphs.Length * (1 - validationFraction));
        var separator = tokenizer.Encode("\n\n", addSpecialTokens: false, parseSpecialTokens: false);
        int[] Encode(IEnumerable<string> parts)
        {
            var ids = new List<int>();
            foreach (var p in parts)
            {
                ids.AddRange(tokenizer.Encode(p.Replace('\n', ' '), addSpecialTokens: false, parseSpecialTokens: false));
                ids.AddRange(separator);
            }
            return ids.ToArray();
        }
        return (Encode(paragraphs.Take(cut)), Encode(paragraphs.Skip(cut)));
    }
}
