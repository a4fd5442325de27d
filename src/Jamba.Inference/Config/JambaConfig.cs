using System.Text.Json;

namespace Jamba.Inference.Config;

/// <summary>The kind of token mixer a decoder layer uses.</summary>
public enum JambaMixerKind
{
    /// <summary>Grouped-query self-attention without positional embedding.</summary>
    Attention,
    /// <summary>The Mamba selective state-space mixer.</summary>
    Mamba,
}

/// <summary>
/// The architecture of a Jamba checkpoint, read from Hugging Face's <c>config.json</c> with the
/// same field names and defaults as transformers' <c>JambaConfig</c>.
/// </summary>
public sealed record JambaConfig
{
    private static readonly HashSet<string> KnownActivations = new(StringComparer.Ordinal)
    {
        "silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu",
    };

    /// <summary><c>vocab_size</c> (default 65536).</summary>
    public int VocabSize { get; init; } = 65536;
    /// <summary><c>tie_word_embeddings</c>: the LM head reuses the token embedding (default false).</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary><c>hidden_size</c> (default 4096).</summary>
    public int HiddenSize { get; init; } = 4096;
    /// <summary><c>intermediate_size</c> of the MLP and of each expert (default 14336).</summary>
    public int IntermediateSize { get; init; } = 14336;
    /// <summary><c>num_hidden_layers</c> (default 32).</summary>
    public int NumHiddenLayers { get; init; } = 32;
    /// <summary><c>num_attention_heads</c> (default 32).</summary>
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary><c>num_key_value_heads</c> (default 8; equals <see cref="NumAttentionHeads"/> when given as null).</summary>
    public int NumKeyValueHeads { get; init; } = 8;
    /// <summary><c>hidden_act</c> of the MLPs and the Mamba mixer (default <c>silu</c>).</summary>
    public string HiddenAct { get; init; } = "silu";
    /// <summary><c>initializer_range</c> (default 0.02; used by training and <c>init</c>).</summary>
    public double InitializerRange { get; init; } = 0.02;
    /// <summary><c>rms_norm_eps</c> (default 1e-6).</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary><c>use_cache</c> (default true).</summary>
    public bool UseCache { get; init; } = true;
    /// <summary><c>num_logits_to_keep</c> (default 1).</summary>
    public int? NumLogitsToKeep { get; init; } = 1;
    /// <summary><c>output_router_logits</c> (default false).</summary>
    public bool OutputRouterLogits { get; init; }
    /// <summary><c>router_aux_loss_coef</c> (default 0.001).</summary>
    public double RouterAuxLossCoef { get; init; } = 0.001;
    /// <summary><c>pad_token_id</c> (default 0).</summary>
    public int? PadTokenId { get; init; } = 0;
    /// <summary><c>bos_token_id</c> (default 1).</summary>
    public int? BosTokenId { get; init; } = 1;
    /// <summary><c>eos_token_id</c>: one id or several (default 2).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [2];
    /// <summary><c>sliding_window</c> (default null: full attention).</summary>
    public int? SlidingWindow { get; init; }
    /// <summary><c>max_position_embeddings</c> (default 262144).</summary>
    public int MaxPositionEmbeddings { get; init; } = 262144;
    /// <summary><c>attention_dropout</c> (default 0).</summary>
    public double AttentionDropout { get; init; }
    /// <summary><c>num_experts_per_tok</c> (default 2).</summary>
    public int NumExpertsPerTok { get; init; } = 2;
    /// <summary><c>num_experts</c> (default 16; 1 means dense MLPs everywhere).</summary>
    public int NumExperts { get; init; } = 16;
    /// <summary><c>expert_layer_period</c> (default 2).</summary>
    public int ExpertLayerPeriod { get; init; } = 2;
    /// <summary><c>expert_layer_offset</c> (default 1).</summary>
    public int ExpertLayerOffset { get; init; } = 1;
    /// <summary><c>attn_layer_period</c> (default 8).</summary>
    public int AttnLayerPeriod { get; init; } = 8;
    /// <summary><c>attn_layer_offset</c> (default 4).</summary>
    public int AttnLayerOffset { get; init; } = 4;
    /// <summary><c>use_mamba_kernels</c> (default true; informational here).</summary>
    public bool UseMambaKernels { get; init; } = true;
    /// <summary><c>mamba_d_state</c> (default 16).</summary>
    public int MambaDState { get; init; } = 16;
    /// <summary><c>mamba_d_conv</c> (default 4).</summary>
    public int MambaDConv { get; init; } = 4;
    /// <summary><c>mamba_expand</c> (default 2).</summary>
    public int MambaExpand { get; init; } = 2;
    /// <summary><c>mamba_dt_rank</c>, with <c>"auto"</c> resolved to <c>ceil(hidden_size / 16)</c>.</summary>
    public int MambaDtRank { get; init; } = 256;
    /// <summary><c>mamba_conv_bias</c> (default true).</summary>
    public bool MambaConvBias { get; init; } = true;
    /// <summary><c>mamba_proj_bias</c> (default false).</summary>
    public bool MambaProjBias { get; init; }
    /// <summary><c>torch_dtype</c> as written in the file, if any (e.g. <c>bfloat16</c>).</summary>
    public string? TorchDtype { get; init; }
    /// <summary>The file this configuration was read from, if any.</summary>
    public string? SourcePath { get; init; }

    /// <summary>Attention head dimension: <c>hidden_size / num_attention_heads</c>.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Mamba inner width: <c>mamba_expand * hidden_size</c>.</summary>
    public int MambaDInner => MambaExpand * HiddenSize;

    /// <summary>The mixer of decoder layer <paramref name="layer"/> (HF rule: attention iff <c>i % attn_layer_period == attn_layer_offset</c>).</summary>
    public JambaMixerKind MixerKind(int layer) =>
        layer % AttnLayerPeriod == AttnLayerOffset ? JambaMixerKind.Attention : JambaMixerKind.Mamba;

    /// <summary>Experts in layer <paramref name="layer"/>'s feed-forward: <see cref="NumExperts"/> for a MoE layer, 1 for a dense MLP.</summary>
    public int LayerNumExperts(int layer) =>
        NumExperts > 1 && layer % ExpertLayerPeriod == ExpertLayerOffset ? NumExperts : 1;

    /// <summary>Whether layer <paramref name="layer"/> has a routed mixture of experts.</summary>
    public bool IsMoeLayer(int layer) => LayerNumExperts(layer) > 1;

    /// <summary>Number of attention layers.</summary>
    public int NumAttentionLayers => Enumerable.Range(0, NumHiddenLayers).Count(i => MixerKind(i) == JambaMixerKind.Attention);
    /// <summary>Number of Mamba layers.</summary>
    public int NumMambaLayers => NumHiddenLayers - NumAttentionLayers;

    /// <summary>Reads and validates <c>config.json</c> (a file or a checkpoint folder holding one).</summary>
    /// <exception cref="FileNotFoundException">No configuration file at the path.</exception>
    /// <exception cref="JambaConfigException">A field is malformed or breaks a rule.</exception>
    public static JambaConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!InputFiles.Exists(file)) throw new FileNotFoundException($"No Jamba config.json at '{file}'.", file);
        // Bounded, strict UTF-8, through symbolic links (Hugging Face cache snapshots).
        string text = InputFiles.ReadText(file, (message, inner) => new JambaConfigException(file, "(file)", message, inner));
        return Parse(text, file);
    }

    /// <summary>Parses and validates a <c>config.json</c> text.</summary>
    /// <exception cref="JambaConfigException">Invalid JSON (including duplicate keys and nesting deeper than 64), a field of the wrong type or out of range.</exception>
    public static JambaConfig Parse(string json, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        var doc = InputFiles.ParseJson(json, lenient: true, (message, inner) => new JambaConfigException(source, "(file)", message, inner));
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new JambaConfigException(source, "(file)", "expected a JSON object.");
            var r = new Reader(root, source);
            if (r.String("model_type") is { } modelType && modelType != "jamba")
                throw new JambaConfigException(source, "model_type", $"expected \"jamba\", found \"{modelType}\".");
            int hidden = r.Int("hidden_size") ?? 4096;
            int heads = r.Int("num_attention_heads") ?? 32;
            var config = new JambaConfig
            {
                VocabSize = r.Int("vocab_size") ?? 65536,
                TieWordEmbeddings = r.Bool("tie_word_embeddings") ?? false,
                HiddenSize = hidden,
                IntermediateSize = r.Int("intermediate_size") ?? 14336,
                NumHiddenLayers = r.Int("num_hidden_layers") ?? 32,
                NumAttentionHeads = heads,
                NumKeyValueHeads = r.IsNull("num_key_value_heads") ? heads : r.Int("num_key_value_heads") ?? 8,
                HiddenAct = r.String("hidden_act") ?? "silu",
                InitializerRange = r.Double("initializer_range") ?? 0.02,
                RmsNormEps = r.Double("rms_norm_eps") ?? 1e-6,
                UseCache = r.Bool("use_cache") ?? true,
                NumLogitsToKeep = r.Has("num_logits_to_keep") ? r.Int("num_logits_to_keep") : 1,
                OutputRouterLogits = r.Bool("output_router_logits") ?? false,
                RouterAuxLossCoef = r.Double("router_aux_loss_coef") ?? 0.001,
                PadTokenId = r.Has("pad_token_id") ? r.Int("pad_token_id") : 0,
                BosTokenId = r.Has("bos_token_id") ? r.Int("bos_token_id") : 1,
                EosTokenIds = r.Has("eos_token_id") ? r.IntOrList("eos_token_id") : [2],
                SlidingWindow = r.Int("sliding_window"),
                MaxPositionEmbeddings = r.Int("max_position_embeddings") ?? 262144,
                AttentionDropout = r.Double("attention_dropout") ?? 0.0,
                NumExpertsPerTok = r.Int("num_experts_per_tok") ?? 2,
                NumExperts = r.Int("num_experts") ?? 16,
                ExpertLayerPeriod = r.Int("expert_layer_period") ?? 2,
                ExpertLayerOffset = r.Int("expert_layer_offset") ?? 1,
                AttnLayerPeriod = r.Int("attn_layer_period") ?? 8,
                AttnLayerOffset = r.Int("attn_layer_offset") ?? 4,
                UseMambaKernels = r.Bool("use_mamba_kernels") ?? true,
                MambaDState = r.Int("mamba_d_state") ?? 16,
                MambaDConv = r.Int("mamba_d_conv") ?? 4,
                MambaExpand = r.Int("mamba_expand") ?? 2,
                MambaDtRank = r.DtRank("mamba_dt_rank", hidden),
                MambaConvBias = r.Bool("mamba_conv_bias") ?? true,
                MambaProjBias = r.Bool("mamba_proj_bias") ?? false,
                TorchDtype = r.String("torch_dtype"),
                SourcePath = source,
            };
            config.Validate();
            return config;
        }
    }

    /// <summary>Writes the configuration as a Hugging Face <c>config.json</c> (every <c>JambaConfig</c> field).</summary>
    public string ToJson()
    {
        var o = new System.Text.Json.Nodes.JsonObject
        {
            ["architectures"] = new System.Text.Json.Nodes.JsonArray("JambaForCausalLM"),
            ["model_type"] = "jamba",
            ["vocab_size"] = VocabSize,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["hidden_act"] = HiddenAct,
            ["initializer_range"] = InitializerRange,
            ["rms_norm_eps"] = RmsNormEps,
            ["use_cache"] = UseCache,
            ["num_logits_to_keep"] = NumLogitsToKeep,
            ["output_router_logits"] = OutputRouterLogits,
            ["router_aux_loss_coef"] = RouterAuxLossCoef,
            ["pad_token_id"] = PadTokenId,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? System.Text.Json.Nodes.JsonValue.Create(EosTokenIds[0]) : new System.Text.Json.Nodes.JsonArray(EosTokenIds.Select(e => (System.Text.Json.Nodes.JsonNode?)e).ToArray()),
            ["sliding_window"] = SlidingWindow,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["attention_dropout"] = AttentionDropout,
            ["num_experts_per_tok"] = NumExpertsPerTok,
            ["num_experts"] = NumExperts,
            ["expert_layer_period"] = ExpertLayerPeriod,
            ["expert_layer_offset"] = ExpertLayerOffset,
            ["attn_layer_period"] = AttnLayerPeriod,
            ["attn_layer_offset"] = AttnLayerOffset,
            ["use_mamba_kernels"] = UseMambaKernels,
            ["mamba_d_state"] = MambaDState,
            ["mamba_d_conv"] = MambaDConv,
            ["mamba_expand"] = MambaExpand,
            ["mamba_dt_rank"] = MambaDtRank,
            ["mamba_conv_bias"] = MambaConvBias,
            ["mamba_proj_bias"] = MambaProjBias,
            ["torch_dtype"] = TorchDtype ?? "float32",
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Checks every rule transformers and this implementation rely on.</summary>
    /// <exception cref="JambaConfigException">Names the field and the broken rule.</exception>
    public void Validate()
    {
        void Positive(string field, int value)
        {
            if (value <= 0) throw new JambaConfigException(SourcePath, field, $"must be a positive integer, found {value}.");
        }
        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("num_experts", NumExperts);
        Positive("num_experts_per_tok", NumExpertsPerTok);
        Positive("expert_layer_period", ExpertLayerPeriod);
        Positive("attn_layer_period", AttnLayerPeriod);
        Positive("mamba_d_state", MambaDState);
        Positive("mamba_d_conv", MambaDConv);
        Positive("mamba_expand", MambaExpand);
        Positive("mamba_dt_rank", MambaDtRank);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        if (AttnLayerOffset < 0 || AttnLayerOffset >= AttnLayerPeriod)
            throw new JambaConfigException(SourcePath, "attn_layer_offset", $"must satisfy 0 <= attn_layer_offset < attn_layer_period ({AttnLayerPeriod}), found {AttnLayerOffset}.");
        if (ExpertLayerOffset < 0 || ExpertLayerOffset >= ExpertLayerPeriod)
            throw new JambaConfigException(SourcePath, "expert_layer_offset", $"must satisfy 0 <= expert_layer_offset < expert_layer_period ({ExpertLayerPeriod}), found {ExpertLayerOffset}.");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new JambaConfigException(SourcePath, "num_attention_heads", $"hidden_size ({HiddenSize}) must be divisible by num_attention_heads ({NumAttentionHeads}).");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new JambaConfigException(SourcePath, "num_key_value_heads", $"num_attention_heads ({NumAttentionHeads}) must be divisible by num_key_value_heads ({NumKeyValueHeads}).");
        if (NumExperts > 1 && NumExpertsPerTok > NumExperts)
            throw new JambaConfigException(SourcePath, "num_experts_per_tok", $"must be at most num_experts ({NumExperts}), found {NumExpertsPerTok}.");
        if (!KnownActivations.Contains(HiddenAct))
            throw new JambaConfigException(SourcePath, "hidden_act", $"unknown activation \"{HiddenAct}\"; supported: {string.Join(", ", KnownActivations)}.");
        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps))
            throw new JambaConfigException(SourcePath, "rms_norm_eps", $"must be a positive finite number, found {RmsNormEps}.");
        if (PadTokenId is { } pad && (pad < 0 || pad >= VocabSize))
            throw new JambaConfigException(SourcePath, "pad_token_id", $"must be in [0, vocab_size={VocabSize}), found {pad}.");
        foreach (var eos in EosTokenIds)
            if (eos < 0 || eos >= VocabSize)
                throw new JambaConfigException(SourcePath, "eos_token_id", $"must be in [0, vocab_size={VocabSize}), found {eos}.");
        if (SlidingWindow is { } window && window <= 0)
            throw new JambaConfigException(SourcePath, "sliding_window", $"must be positive or null, found {window}.");
        if (BosTokenId is { } bos && (bos < 0 || bos >= VocabSize))
            throw new JambaConfigException(SourcePath, "bos_token_id", $"must be in [0, vocab_size={VocabSize}), found {bos}.");
        if (NumLogitsToKeep is { } keep && keep < 0)
            throw new JambaConfigException(SourcePath, "num_logits_to_keep", $"must be non-negative or null, found {keep}.");
        if (!double.IsFinite(InitializerRange) || InitializerRange < 0)
            throw new JambaConfigException(SourcePath, "initializer_range", $"must be a non-negative finite number, found {InitializerRange}.");
        if (!double.IsFinite(RouterAuxLossCoef))
            throw new JambaConfigException(SourcePath, "router_aux_loss_coef", $"must be a finite number, found {RouterAuxLossCoef}.");
        if (!(AttentionDropout >= 0 && AttentionDropout <= 1))
            throw new JambaConfigException(SourcePath, "attention_dropout", $"must be in [0, 1], found {AttentionDropout}.");

        // Implementation limits: the CPU kernels keep one row of these sizes on the stack (Mamba conv window, SSM state,
        // attention head), so absurd values would overflow a thread's stack instead of failing cleanly.
        void AtMost(string field, long value, long max, string why)
        {
            if (value > max) throw new JambaConfigException(SourcePath, field, $"must be at most {max} ({why}), found {value}.");
        }
        AtMost("mamba_d_conv", MambaDConv, MaxMambaDConv, "implementation limit of the convolution kernels");
        AtMost("mamba_d_state", MambaDState, MaxMambaDState, "implementation limit of the selective-scan kernels");
        AtMost("num_attention_heads", HiddenSize / NumAttentionHeads, MaxHeadDim, $"the head dimension hidden_size / num_attention_heads = {HiddenSize / NumAttentionHeads} exceeds the attention kernels' limit {MaxHeadDim}");
        // Products of sizes must fit the integer types they are used in (no silent overflow).
        AtMost("mamba_expand", (long)MambaExpand * HiddenSize, int.MaxValue / 2, $"mamba_expand x hidden_size = {(long)MambaExpand * HiddenSize} must fit twice in a 32-bit integer");
        AtMost("mamba_dt_rank", (long)MambaDtRank + 2L * MambaDState, int.MaxValue, "mamba_dt_rank + 2 x mamba_d_state must fit a 32-bit integer");
        Int128 parameters = CountParameters();
        if (parameters > MaxParameterCount)
            throw new JambaConfigException(SourcePath, "num_hidden_layers",
                $"the sizes (num_hidden_layers={NumHiddenLayers}, hidden_size={HiddenSize}, intermediate_size={IntermediateSize}, num_experts={NumExperts}, vocab_size={VocabSize}, mamba_expand={MambaExpand}) " +
                $"imply {parameters} parameters, more than the {MaxParameterCount} this implementation can address.");
    }

    /// <summary>The largest <c>mamba_d_conv</c> accepted (implementation limit; Jamba uses 4).</summary>
    public const int MaxMambaDConv = 256;
    /// <summary>The largest <c>mamba_d_state</c> accepted (implementation limit; Jamba uses 16).</summary>
    public const int MaxMambaDState = 4096;
    /// <summary>The largest attention head dimension accepted (implementation limit; Jamba uses 128).</summary>
    public const int MaxHeadDim = 16384;
    /// <summary>The most parameters a configuration may imply (so that byte counts of any dtype fit a 64-bit integer).</summary>
    public const long MaxParameterCount = long.MaxValue / 16;

    /// <summary>The exact parameter count of the model this configuration describes (a tied embedding counted once), without overflow.</summary>
    public long ParameterCount
    {
        get
        {
            var n = CountParameters();
            return n > long.MaxValue ? long.MaxValue : (long)n;
        }
    }

    private Int128 CountParameters()
    {
        Int128 h = HiddenSize, inter = IntermediateSize, dInner = (Int128)MambaExpand * HiddenSize, state = MambaDState, rank = MambaDtRank;
        Int128 kvDim = (Int128)NumKeyValueHeads * (NumAttentionHeads == 0 ? 0 : HiddenSize / NumAttentionHeads);
        Int128 attention = h * h * 2 + 2 * kvDim * h;
        Int128 mamba = 2 * dInner * h + (MambaProjBias ? 2 * dInner + h : 0) + dInner * MambaDConv + (MambaConvBias ? dInner : 0)
            + (rank + 2 * state) * dInner + dInner * rank + dInner + dInner * state + dInner + dInner * h + rank + 2 * state;
        Int128 mlp = 3 * h * inter;
        Int128 attentionLayers = 0, moeLayers = 0;
        if (AttnLayerPeriod > 0 && NumHiddenLayers > 0)
            attentionLayers = NumHiddenLayers / AttnLayerPeriod + (NumHiddenLayers % AttnLayerPeriod > AttnLayerOffset ? 1 : 0);
        if (NumExperts > 1 && ExpertLayerPeriod > 0 && NumHiddenLayers > 0)
            moeLayers = NumHiddenLayers / ExpertLayerPeriod + (NumHiddenLayers % ExpertLayerPeriod > ExpertLayerOffset ? 1 : 0);
        Int128 layers = NumHiddenLayers;
        Int128 total = (Int128)VocabSize * h * (TieWordEmbeddings ? 1 : 2) + h
            + layers * 2 * h
            + attentionLayers * attention + (layers - attentionLayers) * mamba
            + moeLayers * (NumExperts * mlp + (Int128)NumExperts * h) + (layers - moeLayers) * mlp;
        return total;
    }

    /// <summary>Typed access to one JSON object with field-naming errors.</summary>
    private readonly struct Reader(JsonElement root, string? source)
    {
        public bool Has(string name) => root.TryGetProperty(name, out _);

        public bool IsNull(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Null;

        private JsonElement? Get(string name) =>
            root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public int? Int(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            throw new JambaConfigException(source, name, $"expected an integer between {int.MinValue} and {int.MaxValue}, found {Describe(v)}.");
        }

        public double? Double(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d)) return d;
            throw new JambaConfigException(source, name, $"expected a finite number, found {Describe(v)}.");
        }

        public bool? Bool(string name)
        {
            if (Get(name) is not { } v) return null;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new JambaConfigException(source, name, $"expected true or false, found {Describe(v)}."),
            };
        }

        public string? String(string name)
        {
            if (Get(name) is not { } v) return null;
            if (v.ValueKind == JsonValueKind.String) return v.GetString();
            throw new JambaConfigException(source, name, $"expected a string, found {Describe(v)}.");
        }

        public IReadOnlyList<int> IntOrList(string name)
        {
            if (Get(name) is not { } v) return [];
            if (v.ValueKind == JsonValueKind.Array)
            {
                var list = new List<int>();
                foreach (var item in v.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id))
                        throw new JambaConfigException(source, name, $"expected 32-bit integers in the list, found {Describe(item)}.");
                    list.Add(id);
                }
                return list;
            }
            return [Int(name)!.Value];
        }

        public int DtRank(string name, int hiddenSize)
        {
            if (Get(name) is { ValueKind: JsonValueKind.String } v)
            {
                if (v.GetString() == "auto") return (int)Math.Ceiling(hiddenSize / 16.0);
                throw new JambaConfigException(source, name, $"expected an integer or \"auto\", found \"{v.GetString()}\".");
            }
            return Int(name) ?? (int)Math.Ceiling(hiddenSize / 16.0);
        }

        private static string Describe(JsonElement v) => JsonField.Describe(v);
    }
}
