namespace Jamba.Inference.Generation;

/// <summary>
/// Finds stop sequences in streamed text. Text that could still turn into a stop sequence is held back;
/// once a stop sequence is complete, the text before it is released and the match is reported. The stop
/// sequence itself is never released.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private readonly System.Text.StringBuilder _pending = new();

    /// <summary>Creates a matcher for <paramref name="stops"/> (may be empty).</summary>
    public StopSequenceMatcher(IEnumerable<string> stops) => _stops = stops.Where(s => s.Length > 0).Distinct().ToArray();

    /// <summary>Whether a stop sequence was found.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds <paramref name="text"/> and returns what can be released now.</summary>
    public string Push(string text)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return text;
        _pending.Append(text);
        string s = _pending.ToString();
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = s.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return s[..first];
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        int hold = 0;
        foreach (var stop in _stops)
            for (int len = Math.Min(stop.Length - 1, s.Length); len > hold; len--)
                if (string.CompareOrdinal(s, s.Length - len, stop, 0, len) == 0)
                {
                    hold = len;
                    break;
                }
        _pending.Clear();
        _pending.Append(s, s.Length - hold, hold);
        return s[..^hold];
    }

    /// <summary>Releases what is held back (at the end of generation, when no stop came).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        string s = _pending.ToString();
        _pending.Clear();
        return s;
    }
}
