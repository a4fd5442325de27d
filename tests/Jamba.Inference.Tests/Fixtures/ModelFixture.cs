using System.Text.Json;

namespace Jamba.Inference.Tests.Fixtures;

/// <summary>A model fixture's <c>expected.json</c> (fields as its README defines them).</summary>
public sealed class ModelFixture
{
    private ModelFixture(string folder, JsonElement root)
    {
        Folder = folder;
        Name = Path.GetFileName(folder);
        MaxNewTokens = root.GetProperty("max_new_tokens").GetInt32();
        Batch1 = new FixtureBatch(root.GetProperty("batch1"));
        Batch2 = new FixtureBatch(root.GetProperty("batch2"));
        LayersBlockType = root.GetProperty("layers_block_type").EnumerateArray().Select(e => e.GetString()!).ToArray();
        LayersNumExperts = root.GetProperty("layers_num_experts").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        WeightsDType = root.GetProperty("generator").GetProperty("weights_dtype").GetString()!;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }
    /// <summary>The folder name.</summary>
    public string Name { get; }
    /// <summary>Greedy tokens generated per row.</summary>
    public int MaxNewTokens { get; }
    /// <summary>The unpadded single sequence.</summary>
    public FixtureBatch Batch1 { get; }
    /// <summary>The left-padded pair.</summary>
    public FixtureBatch Batch2 { get; }
    /// <summary><c>attention</c>/<c>mamba</c> per layer.</summary>
    public string[] LayersBlockType { get; }
    /// <summary>Experts per layer (1 = dense).</summary>
    public int[] LayersNumExperts { get; }
    /// <summary>F32 or BF16.</summary>
    public string WeightsDType { get; }

    /// <summary>Reads the fixture in <paramref name="folder"/>.</summary>
    public static ModelFixture Load(string folder)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "expected.json")));
        return new ModelFixture(folder, doc.RootElement.Clone());
    }

    /// <summary>Both batches with their names.</summary>
    public IEnumerable<(string Name, FixtureBatch Batch)> Batches => [("batch1", Batch1), ("batch2", Batch2)];
}

/// <summary>One input batch of a fixture.</summary>
public sealed class FixtureBatch
{
    internal FixtureBatch(JsonElement e)
    {
        InputIds = e.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        AttentionMask = e.GetProperty("attention_mask").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        Sequences = e.GetProperty("sequences").EnumerateArray().Select(s => new FixtureSequence(s)).ToArray();
        GreedyNewTokens = e.GetProperty("greedy_new_tokens").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        GreedySteps = e.TryGetProperty("greedy_steps", out var steps)
            ? steps.EnumerateArray().Select(s => s.GetProperty("top5_logits").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray()).ToArray()
            : [];
    }

    /// <summary><c>[B][L]</c>.</summary>
    public long[][] InputIds { get; }
    /// <summary><c>[B][L]</c> 1/0.</summary>
    public long[][] AttentionMask { get; }
    /// <summary>Per-row expectations.</summary>
    public FixtureSequence[] Sequences { get; }
    /// <summary><c>[B][N]</c>.</summary>
    public long[][] GreedyNewTokens { get; }
    /// <summary>Per step, per row: the 5 largest next-token logits of the no-cache loop.</summary>
    public float[][][] GreedySteps { get; }
    /// <summary>Rows.</summary>
    public int BatchSize => InputIds.Length;
    /// <summary>Padded length.</summary>
    public int Length => InputIds[0].Length;
    /// <summary>Whether any position is padding.</summary>
    public bool HasPadding => AttentionMask.Any(r => r.Any(v => v == 0));
}

/// <summary>Expectations for one row.</summary>
public sealed class FixtureSequence
{
    internal FixtureSequence(JsonElement s)
    {
        NumPad = s.GetProperty("num_pad").GetInt32();
        LastLogits = s.GetProperty("last_logits").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        LogitsFirst8 = s.GetProperty("logits_first8").EnumerateArray().Select(r => r.ValueKind == JsonValueKind.Null ? null : r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        Argmax = s.GetProperty("argmax").EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Null ? (long?)null : v.GetInt64()).ToArray();
        HiddenStates = s.GetProperty("hidden_states").EnumerateArray().Select(Stat).ToArray();
        LayerOutputs = s.GetProperty("layer_outputs").EnumerateArray().Select(Stat).ToArray();
        if (s.TryGetProperty("layer_outputs_l2_per_position", out var l2))
            LayerL2PerPosition = l2.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        if (s.TryGetProperty("layer_outputs_last_position_first8", out var f8))
            LayerLastFirst8 = f8.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        if (s.TryGetProperty("router_topk", out var rt))
            RouterTopK = rt.EnumerateObject().ToDictionary(
                p => int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture),
                p => (p.Value.GetProperty("experts").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray(),
                      p.Value.GetProperty("weights").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray()));
    }

    private static (double Sum, double L2) Stat(JsonElement e) => (e.GetProperty("sum").GetDouble(), e.GetProperty("l2").GetDouble());

    /// <summary>Leading pad positions.</summary>
    public int NumPad { get; }
    /// <summary>All logits at the last position.</summary>
    public float[] LastLogits { get; }
    /// <summary>Logits of ids 0..7 per position (null on pads).</summary>
    public float[]?[] LogitsFirst8 { get; }
    /// <summary>Argmax per position (null on pads).</summary>
    public long?[] Argmax { get; }
    /// <summary>HF hidden_states reductions.</summary>
    public (double Sum, double L2)[] HiddenStates { get; }
    /// <summary>Per-layer output reductions.</summary>
    public (double Sum, double L2)[] LayerOutputs { get; }
    /// <summary>batch1: per layer, per position L2.</summary>
    public double[][]? LayerL2PerPosition { get; }
    /// <summary>batch1: per layer, dims 0..7 at the last position.</summary>
    public double[][]? LayerLastFirst8 { get; }
    /// <summary>batch1: per MoE layer, (experts[t][k], weights[t][k]).</summary>
    public Dictionary<int, (long[][] Experts, double[][] Weights)>? RouterTopK { get; }
}
