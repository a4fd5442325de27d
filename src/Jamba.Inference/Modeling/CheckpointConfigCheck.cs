using System.Globalization;
using System.Text.RegularExpressions;
using Jamba.Inference.Config;
using Jamba.Inference.Checkpoint;
using static TorchSharp.torch;

namespace Jamba.Inference.Modeling;

/// <summary>
/// Checks <c>config.json</c> against the tensors of the checkpoint BEFORE any module is allocated, so that an absurd
/// or mistaken size (<c>num_hidden_layers: 100000</c> on a 4-layer checkpoint) fails at once with the field, the value
/// found and the value the checkpoint implies, instead of allocating (or trying to allocate) a model that cannot load.
/// </summary>
internal static partial class CheckpointConfigCheck
{
    [GeneratedRegex(@"^model\.layers\.(0|[1-9][0-9]{0,8})\.(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex LayerTensor();

    [GeneratedRegex(@"^feed_forward\.(?:experts\.(?:0|[1-9][0-9]{0,8})\.)?gate_proj\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex GateProj();

    /// <summary>Throws when <paramref name="config"/> cannot describe <paramref name="checkpoint"/>, or when the model would not fit in memory.</summary>
    /// <exception cref="JambaConfigException">A config field disagrees with the tensors (names the field, the value found and the one expected).</exception>
    /// <exception cref="JambaCheckpointException">A tensor is missing, unexpected or mis-shaped for the config, or the model would not fit in memory.</exception>
    public static void Check(JambaConfig config, SafetensorsCheckpoint checkpoint, ModelOptions? options = null)
    {
        CheckStructure(config, checkpoint);
        var expected = ExpectedShapes(config);
        WeightLoader.Plan(config, checkpoint, expected); // every name both ways and every shape, before allocating
        CheckMemory(config, checkpoint, expected, options ?? new ModelOptions());
    }

    /// <summary>The parameter names and shapes of the model <paramref name="config"/> describes (what <see cref="JambaForCausalLM"/> allocates).</summary>
    public static Dictionary<string, long[]> ExpectedShapes(JambaConfig config)
    {
        long h = config.HiddenSize, inter = config.IntermediateSize, dInner = config.MambaDInner, state = config.MambaDState, rank = config.MambaDtRank;
        long headDim = config.HeadDim;
        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal)
        {
            ["model.embed_tokens.weight"] = [config.VocabSize, h],
        };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i.ToString(CultureInfo.InvariantCulture)}.";
            shapes[p + "input_layernorm.weight"] = [h];
            shapes[p + "pre_ff_layernorm.weight"] = [h];
            if (config.MixerKind(i) == JambaMixerKind.Attention)
            {
                shapes[p + "self_attn.q_proj.weight"] = [config.NumAttentionHeads * headDim, h];
                shapes[p + "self_attn.k_proj.weight"] = [config.NumKeyValueHeads * headDim, h];
                shapes[p + "self_attn.v_proj.weight"] = [config.NumKeyValueHeads * headDim, h];
                shapes[p + "self_attn.o_proj.weight"] = [h, config.NumAttentionHeads * headDim];
            }
            else
            {
                shapes[p + "mamba.in_proj.weight"] = [2 * dInner, h];
                if (config.MambaProjBias) shapes[p + "mamba.in_proj.bias"] = [2 * dInner];
                shapes[p + "mamba.conv1d.weight"] = [dInner, 1, config.MambaDConv];
                if (config.MambaConvBias) shapes[p + "mamba.conv1d.bias"] = [dInner];
                shapes[p + "mamba.x_proj.weight"] = [rank + 2 * state, dInner];
                shapes[p + "mamba.dt_proj.weight"] = [dInner, rank];
                shapes[p + "mamba.dt_proj.bias"] = [dInner];
                shapes[p + "mamba.A_log"] = [dInner, state];
                shapes[p + "mamba.D"] = [dInner];
                shapes[p + "mamba.out_proj.weight"] = [h, dInner];
                if (config.MambaProjBias) shapes[p + "mamba.out_proj.bias"] = [h];
                shapes[p + "mamba.dt_layernorm.weight"] = [rank];
                shapes[p + "mamba.b_layernorm.weight"] = [state];
                shapes[p + "mamba.c_layernorm.weight"] = [state];
            }
            if (config.IsMoeLayer(i))
            {
                shapes[p + "feed_forward.router.weight"] = [config.NumExperts, h];
                for (int e = 0; e < config.NumExperts; e++)
                    AddMlp(shapes, $"{p}feed_forward.experts.{e.ToString(CultureInfo.InvariantCulture)}.", h, inter);
            }
            else
            {
                AddMlp(shapes, p + "feed_forward.", h, inter);
            }
        }
        shapes["model.final_layernorm.weight"] = [h];
        if (!config.TieWordEmbeddings) shapes["lm_head.weight"] = [config.VocabSize, h];
        return shapes;
    }

    private static void AddMlp(Dictionary<string, long[]> shapes, string prefix, long h, long inter)
    {
        shapes[prefix + "gate_proj.weight"] = [inter, h];
        shapes[prefix + "up_proj.weight"] = [inter, h];
        shapes[prefix + "down_proj.weight"] = [h, inter];
    }

    /// <summary>The sizes the tensors imply, compared field by field, cheapest first; bounded by the number of tensors
    /// (never by a size from the config).</summary>
    private static void CheckStructure(JambaConfig config, SafetensorsCheckpoint checkpoint)
    {
        string? source = config.SourcePath;
        JambaConfigException Mismatch(string field, object found, object expected, string evidence) =>
            new(source, field, $"is {found}, but the checkpoint implies {expected} ({evidence}).");
        string Shape(SafetensorsTensorInfo t) => "[" + string.Join(", ", t.Shape) + "]";
        SafetensorsTensorInfo? Info(string name) => checkpoint.Contains(name) ? checkpoint.GetInfo(name) : null;
        JambaCheckpointException BadRank(SafetensorsTensorInfo t, string expected) =>
            new(checkpoint.FileOf(t.Name).Path, t.Name, $"shape {Shape(t)} must be {expected}.");

        const string embedName = "model.embed_tokens.weight";
        var embed = Info(embedName) ?? throw new JambaCheckpointException(checkpoint.Folder, embedName, "missing from the checkpoint (every Jamba checkpoint has the token embedding).");
        if (embed.Shape.Length != 2) throw BadRank(embed, "[vocab_size, hidden_size]");
        if (embed.Shape[1] != config.HiddenSize) throw Mismatch("hidden_size", config.HiddenSize, embed.Shape[1], $"{embedName} is {Shape(embed)}");
        if (embed.Shape[0] != config.VocabSize) throw Mismatch("vocab_size", config.VocabSize, embed.Shape[0], $"{embedName} is {Shape(embed)}");

        // Layers: model.layers.{N-1}.* must exist and model.layers.{N}.* must not.
        var layers = new SortedDictionary<int, List<string>>();
        foreach (var name in checkpoint.TensorNames)
        {
            var m = LayerTensor().Match(name);
            if (!m.Success) continue; // odd names are reported as unexpected by the full check
            int index = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            if (!layers.TryGetValue(index, out var list)) layers[index] = list = new List<string>();
            list.Add(m.Groups[2].Value);
        }
        // The layers numbered 0, 1, 2, ... without a gap; tensors of layers past a gap are left to the full check
        // (reported as unexpected), which then enumerates no more layers than the checkpoint has.
        int count = 0;
        while (layers.ContainsKey(count)) count++;
        int last = layers.Count == 0 ? -1 : layers.Keys.Last();
        if (count != config.NumHiddenLayers)
        {
            if (config.NumHiddenLayers > count && config.NumHiddenLayers == last + 1)
                throw new JambaCheckpointException(checkpoint.Folder, $"model.layers.{count}.*",
                    $"no tensors for layer {count}, although num_hidden_layers is {config.NumHiddenLayers} and the checkpoint has tensors of layer {last} (layers must be numbered 0..N-1).");
            throw Mismatch("num_hidden_layers", config.NumHiddenLayers, count,
                count == 0 ? "it has no model.layers.0.* tensors" : $"it has tensors of model.layers.0 to model.layers.{count - 1} and none of model.layers.{count}");
        }
        foreach (var extra in layers.Keys.Where(k => k >= count).ToList()) layers.Remove(extra);

        bool routerSeen = false;
        foreach (var (i, suffixes) in layers)
        {
            bool attention = suffixes.Any(s => s.StartsWith("self_attn.", StringComparison.Ordinal));
            bool mamba = suffixes.Any(s => s.StartsWith("mamba.", StringComparison.Ordinal));
            var kind = config.MixerKind(i);
            if (attention != mamba && (attention ? JambaMixerKind.Attention : JambaMixerKind.Mamba) != kind)
                throw new JambaConfigException(source, "attn_layer_offset",
                    $"attn_layer_period={config.AttnLayerPeriod} and attn_layer_offset={config.AttnLayerOffset} make layer {i} a{(kind == JambaMixerKind.Attention ? "n attention" : " mamba")} layer, " +
                    $"but the checkpoint's layer {i} is a{(attention ? "n attention" : " mamba")} layer (model.layers.{i}.{(attention ? "self_attn" : "mamba")}.* present).");

            string routerName = $"model.layers.{i}.feed_forward.router.weight";
            var router = Info(routerName);
            bool moe = config.IsMoeLayer(i);
            if (router is not null)
            {
                if (router.Shape.Length != 2) throw BadRank(router, "[num_experts, hidden_size]");
                if (!moe)
                    throw new JambaConfigException(source, config.NumExperts <= 1 ? "num_experts" : "expert_layer_offset",
                        $"num_experts={config.NumExperts}, expert_layer_period={config.ExpertLayerPeriod} and expert_layer_offset={config.ExpertLayerOffset} make layer {i} a dense MLP, " +
                        $"but the checkpoint has {routerName} {Shape(router)} (a mixture of {router.Shape[0]} experts).");
                if (router.Shape[0] != config.NumExperts)
                    throw routerSeen
                        ? new JambaCheckpointException(checkpoint.FileOf(routerName).Path, routerName, $"shape {Shape(router)} does not match the model's [{config.NumExperts}, {config.HiddenSize}] for this config.")
                        : Mismatch("num_experts", config.NumExperts, router.Shape[0], $"{routerName} is {Shape(router)}");
                routerSeen = true;
            }
            else if (moe)
            {
                // Checked here, not left to the full check: that one would enumerate num_experts, which nothing else bounds.
                throw new JambaConfigException(source, "expert_layer_offset",
                    $"num_experts={config.NumExperts}, expert_layer_period={config.ExpertLayerPeriod} and expert_layer_offset={config.ExpertLayerOffset} make layer {i} a mixture of experts, " +
                    $"but the checkpoint's layer {i} has no {routerName}" +
                    (suffixes.Any(s => s.StartsWith("feed_forward.", StringComparison.Ordinal)) ? " (it has a dense MLP)." : "."));
            }
        }

        // Widths, from the first layer that shows each: when that layer agrees with the config and a later one does not,
        // the later tensor is at fault and the full check names it.
        bool gateSeen = false, mambaSeen = false, attentionSeen = false;
        foreach (var (i, suffixes) in layers)
        {
            string p = $"model.layers.{i}.";
            if (!gateSeen && suffixes.FirstOrDefault(s => GateProj().IsMatch(s)) is { } gate && Info(p + gate) is { Shape.Length: 2 } g)
            {
                gateSeen = true;
                if (g.Shape[0] != config.IntermediateSize)
                    throw Mismatch("intermediate_size", config.IntermediateSize, g.Shape[0], $"{p}{gate} is {Shape(g)}");
            }
            if (config.MixerKind(i) == JambaMixerKind.Mamba && !mambaSeen && suffixes.Any(s => s.StartsWith("mamba.", StringComparison.Ordinal)))
            {
                mambaSeen = true;
                if (Info(p + "mamba.in_proj.weight") is { Shape.Length: 2 } inProj && inProj.Shape[0] != 2L * config.MambaDInner)
                    throw new JambaConfigException(source, "mamba_expand",
                        $"is {config.MambaExpand}: 2 x mamba_expand x hidden_size = {2L * config.MambaDInner}, but {p}mamba.in_proj.weight is {Shape(inProj)}" +
                        (inProj.Shape[0] % (2L * config.HiddenSize) == 0 ? $" (mamba_expand {inProj.Shape[0] / (2L * config.HiddenSize)})." : "."));
                if (Info(p + "mamba.conv1d.weight") is { Shape.Length: 3 } conv && conv.Shape[2] != config.MambaDConv)
                    throw Mismatch("mamba_d_conv", config.MambaDConv, conv.Shape[2], $"{p}mamba.conv1d.weight is {Shape(conv)}");
                if (Info(p + "mamba.A_log") is { Shape.Length: 2 } aLog && aLog.Shape[1] != config.MambaDState)
                    throw Mismatch("mamba_d_state", config.MambaDState, aLog.Shape[1], $"{p}mamba.A_log is {Shape(aLog)}");
                if (Info(p + "mamba.dt_proj.weight") is { Shape.Length: 2 } dt && dt.Shape[1] != config.MambaDtRank)
                    throw Mismatch("mamba_dt_rank", config.MambaDtRank, dt.Shape[1], $"{p}mamba.dt_proj.weight is {Shape(dt)}");
                bool convBias = checkpoint.Contains(p + "mamba.conv1d.bias");
                if (convBias != config.MambaConvBias)
                    throw Mismatch("mamba_conv_bias", config.MambaConvBias ? "true" : "false", convBias ? "true" : "false", $"{p}mamba.conv1d.bias is {(convBias ? "present" : "absent")}");
                bool projBias = checkpoint.Contains(p + "mamba.in_proj.bias");
                if (projBias != config.MambaProjBias)
                    throw Mismatch("mamba_proj_bias", config.MambaProjBias ? "true" : "false", projBias ? "true" : "false", $"{p}mamba.in_proj.bias is {(projBias ? "present" : "absent")}");
            }
            if (config.MixerKind(i) == JambaMixerKind.Attention && !attentionSeen && Info(p + "self_attn.k_proj.weight") is { Shape.Length: 2 } k)
            {
                attentionSeen = true;
                if (k.Shape[0] != (long)config.NumKeyValueHeads * config.HeadDim)
                    throw new JambaConfigException(source, "num_key_value_heads",
                    $"is {config.NumKeyValueHeads}: num_key_value_heads x head_dim ({config.HeadDim}) = {(long)config.NumKeyValueHeads * config.HeadDim}, but {p}self_attn.k_proj.weight is {Shape(k)}" +
                    (k.Shape[0] % config.HeadDim == 0 ? $" ({k.Shape[0] / config.HeadDim} key/value heads)." : "."));
            }
        }

        if (!config.TieWordEmbeddings && !checkpoint.Contains("lm_head.weight"))
            throw new JambaConfigException(source, "tie_word_embeddings", "is false, but the checkpoint has no lm_head.weight (set it to true if the head shares the embedding).");
    }

    private static void CheckMemory(JambaConfig config, SafetensorsCheckpoint checkpoint, Dictionary<string, long[]> expected, ModelOptions options)
    {
        if (options.TorchDevice.type != TorchSharp.DeviceType.CPU) return; // device memory is the device's to report
        long elementSize = options.ResolveScalarType() switch
        {
            ScalarType.Float64 => 8,
            ScalarType.Float32 => 4,
            _ => 2,
        };
        Int128 bytes = 0;
        foreach (var shape in expected.Values)
        {
            Int128 n = 1;
            foreach (var d in shape) n *= d;
            bytes += n * elementSize;
        }
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (available > 0 && bytes > available)
            throw new JambaCheckpointException(checkpoint.Folder, null,
                $"the model needs {bytes} bytes for its {config.ParameterCount} parameters as {options.ResolveScalarType()}, more than the {available} bytes of memory available.");
    }
}
