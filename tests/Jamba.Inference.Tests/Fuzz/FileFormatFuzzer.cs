using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Jamba.Inference.Checkpoint;
using Jamba.Inference.Config;
using Jamba.Inference.Modeling;
using Jamba.Inference.Templates;
using Jamba.Inference.Tests.Fixtures;
using Jamba.Inference.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Jamba.Inference.Tests.Fuzz;

/// <summary>The file a fuzz case mutates.</summary>
public enum FuzzTarget
{
    /// <summary><c>config.json</c> of a single-file checkpoint (loaded and run).</summary>
    Config,
    /// <summary><c>model.safetensors</c>: header JSON, header length, bytes (loaded and run).</summary>
    Safetensors,
    /// <summary><c>model.safetensors.index.json</c> of a sharded checkpoint (loaded and run).</summary>
    Index,
    /// <summary><c>tokenizer.json</c> (loaded, encoding and decoding).</summary>
    TokenizerJson,
    /// <summary><c>tokenizer_config.json</c>, with a list of chat templates (tokenizer and template loaded, template rendered).</summary>
    TokenizerConfig,
    /// <summary><c>generation_config.json</c>.</summary>
    GenerationConfig,
    /// <summary><c>tokenizer.model</c> (SentencePiece protobuf).</summary>
    SentencePiece,
}

/// <summary>The pristine files every case starts from, built once.</summary>
public sealed class FuzzCorpus : IDisposable
{
    public FuzzCorpus()
    {
        Root = Directory.CreateTempSubdirectory("jamba-fuzz-").FullName;
        var config = HostileInputs.TinyConfig(vocab: 64);
        Single = HostileInputs.WriteCheckpoint(Path.Combine(Root, "single"), config);
        Sharded = HostileInputs.WriteCheckpoint(Path.Combine(Root, "sharded"), config, shardBytes: 12000);
        Tokenizer = Directory.CreateDirectory(Path.Combine(Root, "tokenizer")).FullName;
        File.Copy(Path.Combine(HostileInputs.TokenizerData, "tokenizer.json"), Path.Combine(Tokenizer, "tokenizer.json"));
        var tc = JsonNode.Parse(File.ReadAllText(Path.Combine(HostileInputs.TokenizerData, "tokenizer_config.json")))!.AsObject();
        tc["chat_template"] = new JsonArray(
            new JsonObject { ["name"] = "default", ["template"] = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}" },
            new JsonObject { ["name"] = "tool_use", ["template"] = "{% for t in tools or [] %}{{ t | tojson }}{% endfor %}" });
        File.WriteAllText(Path.Combine(Tokenizer, "tokenizer_config.json"), tc.ToJsonString());
        File.WriteAllText(Path.Combine(Tokenizer, "generation_config.json"),
            """{"bos_token_id": 1, "eos_token_id": [2, 8], "pad_token_id": 0, "max_length": 20, "do_sample": false, "transformers_version": "4.45.1"}""");
        SentencePiece = Directory.CreateDirectory(Path.Combine(Root, "spm")).FullName;
        File.Copy(Path.Combine(HostileInputs.TokenizerData, "tokenizer.model"), Path.Combine(SentencePiece, "tokenizer.model"));
        File.Copy(Path.Combine(HostileInputs.TokenizerData, "tokenizer_config.json"), Path.Combine(SentencePiece, "tokenizer_config.json"));
    }

    public string Root { get; }
    public string Single { get; }
    public string Sharded { get; }
    public string Tokenizer { get; }
    public string SentencePiece { get; }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// Seeded, deterministic mutations of checkpoint and tokenizer files. <see cref="Run"/> writes one mutated case into a
/// work folder and loads it the way an application does; it returns "ok" or the name of the library exception that
/// rejected the input. Any other exception escapes: that is a bug.
/// </summary>
public static class FileFormatFuzzer
{
    /// <summary>The exceptions untrusted files may end in.</summary>
    public static bool IsAllowed(Exception e) =>
        e is JambaCheckpointException or JambaConfigException or JambaTokenizerException or TemplateException;

    /// <summary>The deterministic random source of case <paramref name="index"/> of <paramref name="target"/>.</summary>
    public static Random CaseRandom(int seed, FuzzTarget target, int index) =>
        new(unchecked(seed * 1_000_003 + (int)target * 7919 + index * 104_729));

    /// <summary>Runs one case in <paramref name="work"/> (emptied first); returns its outcome and a description of the mutation.</summary>
    public static (string Outcome, string Mutation) Run(FuzzCorpus corpus, FuzzTarget target, int seed, int index, string work)
    {
        if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        Directory.CreateDirectory(work);
        var r = CaseRandom(seed, target, index);
        var log = new StringBuilder();
        switch (target)
        {
            case FuzzTarget.Config:
                HostileInputs.CopyFolder(corpus.Single, work);
                MutateJsonFile(Path.Combine(work, "config.json"), r, log, ConfigHints);
                break;
            case FuzzTarget.Safetensors:
                HostileInputs.CopyFolder(corpus.Single, work);
                MutateSafetensors(Path.Combine(work, "model.safetensors"), r, log);
                break;
            case FuzzTarget.Index:
                HostileInputs.CopyFolder(corpus.Sharded, work);
                MutateJsonFile(Path.Combine(work, SafetensorsCheckpoint.IndexFileName), r, log, IndexHints);
                break;
            case FuzzTarget.TokenizerJson:
                HostileInputs.CopyFolder(corpus.Tokenizer, work);
                MutateJsonFile(Path.Combine(work, "tokenizer.json"), r, log, TokenizerHints);
                break;
            case FuzzTarget.TokenizerConfig:
                HostileInputs.CopyFolder(corpus.Tokenizer, work);
                MutateJsonFile(Path.Combine(work, "tokenizer_config.json"), r, log, TokenizerConfigHints);
                break;
            case FuzzTarget.GenerationConfig:
                HostileInputs.CopyFolder(corpus.Tokenizer, work);
                MutateJsonFile(Path.Combine(work, "generation_config.json"), r, log, GenerationHints);
                break;
            case FuzzTarget.SentencePiece:
                HostileInputs.CopyFolder(corpus.SentencePiece, work);
                MutateBytes(Path.Combine(work, "tokenizer.model"), r, log);
                break;
        }
        try
        {
            if (target is FuzzTarget.Config or FuzzTarget.Safetensors or FuzzTarget.Index) LoadModel(work);
            else LoadTokenizer(work);
            return ("ok", log.ToString());
        }
        catch (Exception e) when (IsAllowed(e))
        {
            if (Environment.GetEnvironmentVariable("JAMBA_FUZZ_MESSAGES") == "1") // to review what the rejections say
            {
                string m = System.Text.RegularExpressions.Regex.Replace(e.Message.Replace(work, "<w>"), "[0-9]+", "N");
                Console.Error.WriteLine($"MSG {target} {m[..Math.Min(110, m.Length)]}");
            }
            return (e.GetType().Name, log.ToString());
        }
    }

    private static void LoadModel(string folder)
    {
        using var model = JambaForCausalLM.FromPretrained(folder, new ModelOptions { DType = ComputeDType.Float32 });
        long vocab = model.Config.VocabSize;
        using var ids = torch.tensor(new long[] { 0, 1 % vocab, 2 % vocab }, [1, 3]);
        using var logits = model.Forward(ids, positions: LogitPositions.All);
        if (logits.shape[2] != vocab) throw new InvalidOperationException($"logits are {logits.shape[2]} wide, vocab {vocab}");
    }

    private static readonly JsonNode Messages = JsonNode.Parse("""[{"role":"system","content":"s"},{"role":"user","content":"Hello wörld 🙂"}]""")!;

    private static void LoadTokenizer(string folder)
    {
        var tokenizer = JambaTokenizer.Load(folder);
        var ids = tokenizer.Encode("Hello wörld 🙂 <|user|> x\n\ty", addSpecialTokens: true);
        _ = tokenizer.Decode(ids.Concat([-1, int.MaxValue, tokenizer.VocabSize, 0]), skipSpecialTokens: false);
        _ = tokenizer.Decode(ids, skipSpecialTokens: true);
        var stream = tokenizer.CreateStreamingDetokenizer();
        foreach (var id in ids) stream.Append(id);
        stream.Flush();
        string? bos = tokenizer.BosTokenId is { } b ? tokenizer.IdToToken(b) : null;
        if (ChatTemplate.TryFromCheckpoint(folder, out var template))
            _ = template.Render(Messages, addGenerationPrompt: true, bosToken: bos);
        if (ChatTemplate.TryFromCheckpoint(folder, out var tools, "tool_use"))
            _ = tools.Render(Messages, tools: JsonNode.Parse("""[{"name":"f"}]"""));
    }

    // ------------------------------------------------------------------ JSON mutations

    private static readonly string[] ConfigHints =
    [
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "num_experts",
        "num_experts_per_tok", "attn_layer_period", "attn_layer_offset", "expert_layer_period", "expert_layer_offset", "mamba_d_state",
        "mamba_d_conv", "mamba_expand", "mamba_dt_rank", "rms_norm_eps", "eos_token_id", "pad_token_id", "bos_token_id", "tie_word_embeddings",
        "hidden_act", "sliding_window", "max_position_embeddings", "mamba_conv_bias", "mamba_proj_bias", "num_logits_to_keep", "model_type",
        "initializer_range", "attention_dropout", "router_aux_loss_coef", "use_cache",
    ];
    private static readonly string[] IndexHints = ["weight_map", "metadata"];
    private static readonly string[] TokenizerHints = ["model", "model.vocab", "model.merges", "decoder", "normalizer", "pre_tokenizer", "post_processor", "added_tokens"];
    private static readonly string[] TokenizerConfigHints = ["added_tokens_decoder", "chat_template", "bos_token", "eos_token", "pad_token", "unk_token", "add_bos_token", "legacy"];
    private static readonly string[] GenerationHints = ["eos_token_id", "bos_token_id", "pad_token_id"];

    private const string RawMarker = "__raw__:";
    private static readonly string[] RawNumbers = ["1e400", "-1e400", "1e308", "-0", "1.0", "2.5", "1e-320", "4294967296", "9223372036854775808", "-9223372036854775809", "0.0000001"];

    /// <summary>A random JSON value (raw numbers that JsonNode cannot hold are written through a marker).</summary>
    private static JsonNode? RandomValue(Random r, JsonNode? like)
    {
        switch (r.Next(20))
        {
            case 0: return null;
            case 1: return JsonValue.Create(r.Next(2) == 0);
            case 2: return JsonValue.Create(0);
            case 3: return JsonValue.Create(-1);
            case 4: return JsonValue.Create(r.Next(-3, 80));
            case 5: return JsonValue.Create(int.MaxValue);
            case 6: return JsonValue.Create(int.MinValue);
            case 7: return JsonValue.Create(RawMarker + RawNumbers[r.Next(RawNumbers.Length)]);
            case 8: return JsonValue.Create("");
            case 9: return JsonValue.Create(new[] { "auto", "silu", "abc", "<|pad|>", "default", "BPE", "Sequence", "../x", "\u2581" }[r.Next(9)]);
            case 10: return new JsonArray();
            case 11: return new JsonObject();
            case 12: return new JsonArray(JsonValue.Create(1), JsonValue.Create("x"));
            case 13: return new JsonObject { ["type"] = "Replace" };
            case 14: return JsonValue.Create(100000);
            case 15: return JsonValue.Create(r.Next(2) == 0 ? 1 << 24 : (1 << 24) - 1);
            case 16: return JsonValue.Create(0.5);
            default:
                // A value of the same kind, nudged.
                if (like is JsonValue v && v.TryGetValue(out long n)) return JsonValue.Create(n + r.Next(-2, 3) * (r.Next(4) == 0 ? 1000 : 1));
                if (like is JsonValue s && s.TryGetValue(out string? str)) return JsonValue.Create(str.Length > 0 && r.Next(2) == 0 ? str[..r.Next(str.Length)] : str + "x");
                if (like is JsonArray a) return new JsonArray(a.Take(Math.Max(0, a.Count - 1)).Select(x => x?.DeepClone()).ToArray());
                return JsonValue.Create(7);
        }
    }

    /// <summary>Every node below <paramref name="node"/> with its parent and key/index.</summary>
    private static void Collect(JsonNode? node, List<(JsonNode Parent, object Key, JsonNode? Value)> into, int depth = 0)
    {
        if (depth > 20) return;
        if (node is JsonObject o)
            foreach (var (k, v) in o.ToList()) { into.Add((o, k, v)); Collect(v, into, depth + 1); }
        else if (node is JsonArray a)
            for (int i = 0; i < a.Count; i++) { into.Add((a, i, a[i])); Collect(a[i], into, depth + 1); }
    }

    private static JsonNode? Resolve(JsonNode root, string path)
    {
        JsonNode? n = root;
        foreach (var part in path.Split('.')) n = n is JsonObject o && o.TryGetPropertyValue(part, out var v) ? v : null;
        return n;
    }

    private static void MutateJsonFile(string file, Random r, StringBuilder log, string[] hints)
    {
        string text = File.ReadAllText(file);
        var root = JsonNode.Parse(text)!;
        int ops = 1 + r.Next(3);
        for (int op = 0; op < ops; op++)
        {
            // Half the time somewhere under a field the library reads, otherwise anywhere.
            var nodes = new List<(JsonNode Parent, object Key, JsonNode? Value)>();
            string hint = hints[r.Next(hints.Length)];
            var hinted = Resolve(root, hint);
            if (r.Next(2) == 0 && hinted is not null)
            {
                Collect(hinted, nodes);
                if (hinted.Parent is { } parent) nodes.Add((parent, hint.Split('.')[^1], hinted));
                if (nodes.Count > 200 && r.Next(2) == 0) nodes = nodes.Where(n => n.Value is not JsonValue || n.Parent == hinted).ToList();
            }
            if (nodes.Count == 0) Collect(root, nodes);
            if (nodes.Count == 0) break;
            var (p, key, value) = nodes[r.Next(nodes.Count)];
            string where = key is int i ? $"{p.GetPath()}[{i}]" : $"{p.GetPath()}.{key}";
            switch (r.Next(6))
            {
                case 0 or 1 or 2:
                    var nv = RandomValue(r, value);
                    Set(p, key, nv);
                    log.Append($"set {where}={nv?.ToJsonString() ?? "null"}; ");
                    break;
                case 3:
                    if (p is JsonObject po) po.Remove((string)key); else ((JsonArray)p).RemoveAt((int)key);
                    log.Append($"delete {where}; ");
                    break;
                case 4:
                    var extra = RandomValue(r, value);
                    if (p is JsonObject pe) pe[$"x{r.Next(100)}"] = extra; else ((JsonArray)p).Insert(r.Next(((JsonArray)p).Count + 1), extra);
                    log.Append($"insert into {p.GetPath()}; ");
                    break;
                default:
                    // The whole hinted field of another kind.
                    if (root is JsonObject ro) { var v = RandomValue(r, null); ro[hint.Split('.')[0]] = v; log.Append($"set {hint.Split('.')[0]}={v?.ToJsonString() ?? "null"}; "); }
                    break;
            }
        }
        string json = root.ToJsonString();
        foreach (var raw in RawNumbers) json = json.Replace($"\"{RawMarker}{raw}\"", raw, StringComparison.Ordinal);
        var bytes = Encoding.UTF8.GetBytes(json);
        if (r.Next(6) == 0) bytes = TextLevel(bytes, r, log);
        File.WriteAllBytes(file, bytes);
    }

    private static void Set(JsonNode parent, object key, JsonNode? value)
    {
        if (parent is JsonObject o) o[(string)key] = value;
        else ((JsonArray)parent)[(int)key] = value;
    }

    /// <summary>Byte-level damage to a text file: truncation, a flipped or inserted byte, a duplicated key, deep nesting, invalid UTF-8.</summary>
    private static byte[] TextLevel(byte[] bytes, Random r, StringBuilder log)
    {
        switch (r.Next(6))
        {
            case 0:
                int cut = r.Next(bytes.Length);
                log.Append($"truncate at {cut}; ");
                return bytes[..cut];
            case 1:
                int at = r.Next(bytes.Length);
                bytes[at] ^= (byte)(1 << r.Next(8));
                log.Append($"flip byte {at}; ");
                return bytes;
            case 2:
                log.Append("duplicate first key; ");
                int brace = Array.IndexOf(bytes, (byte)'{');
                int colon = Array.IndexOf(bytes, (byte)',', Math.Max(0, brace));
                if (brace < 0 || colon < 0) return bytes;
                return [.. bytes[..(colon + 1)], .. bytes[(brace + 1)..(colon + 1)], .. bytes[(colon + 1)..]];
            case 3:
                log.Append("deep nesting; ");
                return Encoding.UTF8.GetBytes("{\"deep\":" + new string('[', 100 + r.Next(2000)) + new string(']', 0) + "}").Concat(bytes).ToArray();
            case 4:
                int bad = r.Next(bytes.Length);
                log.Append($"invalid UTF-8 at {bad}; ");
                bytes[bad] = (byte)(0x80 | r.Next(0x40)); // a stray continuation byte
                return bytes;
            default:
                log.Append("BOM; ");
                return [0xEF, 0xBB, 0xBF, .. bytes];
        }
    }

    // ------------------------------------------------------------------ binary mutations

    private static readonly string[] DTypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "", "f32", "F32, F16", "Q4"];

    private static void MutateSafetensors(string file, Random r, StringBuilder log)
    {
        var bytes = File.ReadAllBytes(file);
        long headerLen = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var headerBytes = bytes[8..(int)(8 + headerLen)];
        var data = bytes[(int)(8 + headerLen)..];
        switch (r.Next(8))
        {
            case 0 or 1 or 2:
                {
                    // Structured: change a tensor's dtype, shape or offsets, delete or add entries, metadata.
                    var header = JsonNode.Parse(Encoding.UTF8.GetString(headerBytes).TrimEnd(' '))!.AsObject();
                    var names = header.Select(kv => kv.Key).Where(k => k != "__metadata__").ToList();
                    int ops = 1 + r.Next(2);
                    for (int op = 0; op < ops; op++)
                    {
                        string name = names[r.Next(names.Count)];
                        var t = header[name] as JsonObject;
                        switch (r.Next(9))
                        {
                            case 0 when t is not null:
                                string dt = DTypes[r.Next(DTypes.Length)];
                                t["dtype"] = dt;
                                log.Append($"{name}.dtype={dt}; ");
                                break;
                            case 1 when t is not null && t["shape"] is JsonArray shape:
                                if (shape.Count > 0 && r.Next(2) == 0)
                                {
                                    int d = r.Next(shape.Count);
                                    long was = AsLong(shape[d]);
                                    long nv = new long[] { 0, -1, was + 1, was * 2, 1L << 32, long.MaxValue }[r.Next(6)];
                                    shape[d] = nv;
                                    log.Append($"{name}.shape[{d}]={nv}; ");
                                }
                                else
                                {
                                    shape.Add(r.Next(3));
                                    log.Append($"{name}.shape+dim; ");
                                }
                                break;
                            case 2 or 3 when t is not null && t["data_offsets"] is JsonArray off:
                                int which = r.Next(2);
                                long cur = off.Count > which ? AsLong(off[which]) : 0;
                                if (off.Count <= which) break;
                                long k = new long[] { 1, -1, 2, -4, 8, 1 << 20, -cur, long.MaxValue - cur }[r.Next(8)];
                                off[which] = cur + k;
                                log.Append($"{name}.data_offsets[{which}]+={k}; ");
                                break;
                            case 4:
                                header.Remove(name);
                                names.Remove(name);
                                log.Append($"delete {name}; ");
                                break;
                            case 5:
                                header["__metadata__"] = RandomValue(r, header["__metadata__"]);
                                log.Append("metadata=random; ");
                                break;
                            case 6 when t is not null:
                                t[new[] { "dtype", "shape", "data_offsets" }[r.Next(3)]] = RandomValue(r, null);
                                log.Append($"{name}.field=random; ");
                                break;
                            case 7 when t is not null:
                                header[name + "x"] = t.DeepClone();
                                log.Append($"copy {name}; ");
                                break;
                            default:
                                header[name] = RandomValue(r, t);
                                log.Append($"{name}=random; ");
                                break;
                        }
                        if (names.Count == 0) break;
                    }
                    string json = header.ToJsonString();
                    foreach (var raw in RawNumbers) json = json.Replace($"\"{RawMarker}{raw}\"", raw, StringComparison.Ordinal);
                    var h = Encoding.UTF8.GetBytes(json).ToList();
                    while (h.Count % 8 != 0) h.Add((byte)' ');
                    headerBytes = h.ToArray();
                    headerLen = headerBytes.Length;
                    if (r.Next(5) == 0)
                    {
                        long delta = r.Next(1, 17) * (r.Next(2) == 0 ? 1 : -1);
                        headerLen += delta;
                        log.Append($"header length {delta:+#;-#}; ");
                    }
                    break;
                }
            case 3:
                {
                    int n = 1 + r.Next(4);
                    for (int i = 0; i < n; i++)
                    {
                        int at = r.Next(headerBytes.Length);
                        headerBytes[at] = r.Next(3) == 0 ? (byte)r.Next(256) : (byte)(headerBytes[at] ^ (1 << r.Next(8)));
                        log.Append($"header byte {at}; ");
                    }
                    break;
                }
            case 4:
                {
                    long delta = r.Next(4) == 0 ? r.NextInt64() : r.Next(1, 17) * (r.Next(2) == 0 ? 1 : -1);
                    headerLen += delta;
                    log.Append($"header length {delta:+#;-#;0}; ");
                    break;
                }
            case 5:
                {
                    var all = Concat(headerLen, headerBytes, data);
                    int cut = r.Next(2) == 0 ? all.Length - r.Next(1, 64) : r.Next(all.Length);
                    File.WriteAllBytes(file, all[..Math.Max(0, cut)]);
                    log.Append($"truncate at {cut}; ");
                    return;
                }
            case 6:
                {
                    if (r.Next(2) == 0)
                    {
                        var extra = new byte[r.Next(1, 64)];
                        r.NextBytes(extra);
                        data = [.. data, .. extra];
                        log.Append($"append {extra.Length} bytes; ");
                    }
                    else
                    {
                        // Padding that is not spaces.
                        int last = Array.LastIndexOf(headerBytes, (byte)'}');
                        byte pad = new byte[] { 0, (byte)'\t', (byte)'\n', (byte)'}', (byte)'x' }[r.Next(5)];
                        for (int i = last + 1; i < headerBytes.Length; i++) headerBytes[i] = pad;
                        if (last + 1 == headerBytes.Length) headerBytes = [.. headerBytes, pad];
                        headerLen = headerBytes.Length;
                        log.Append($"pad with 0x{pad:X2}; ");
                    }
                    break;
                }
            default:
                {
                    int n = 1 + r.Next(16);
                    for (int i = 0; i < n && data.Length > 0; i++) data[r.Next(data.Length)] = (byte)r.Next(256);
                    log.Append($"{n} data bytes; ");
                    break;
                }
        }
        File.WriteAllBytes(file, Concat(headerLen, headerBytes, data));
    }

    private static long AsLong(JsonNode? node) => node is JsonValue v && v.TryGetValue(out long x) ? x : 0;

    private static byte[] Concat(long headerLen, byte[] header, byte[] data)
    {
        var all = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(all, (ulong)headerLen);
        header.CopyTo(all, 8);
        data.CopyTo(all, 8 + header.Length);
        return all;
    }

    private static void MutateBytes(string file, Random r, StringBuilder log)
    {
        var bytes = File.ReadAllBytes(file);
        switch (r.Next(5))
        {
            case 0:
                int cut = r.Next(bytes.Length);
                bytes = bytes[..cut];
                log.Append($"truncate at {cut}; ");
                break;
            case 1:
            case 2:
                int n = 1 + r.Next(8);
                for (int i = 0; i < n; i++)
                {
                    int at = r.Next(bytes.Length);
                    bytes[at] = r.Next(2) == 0 ? (byte)r.Next(256) : (byte)(bytes[at] ^ (1 << r.Next(8)));
                }
                log.Append($"{n} bytes changed; ");
                break;
            case 3:
                int pos = r.Next(bytes.Length);
                var junk = Enumerable.Repeat((byte)0xFF, r.Next(1, 12)).ToArray();
                bytes = [.. bytes[..pos], .. junk, .. bytes[pos..]];
                log.Append($"0xFF run at {pos}; ");
                break;
            default:
                int from = r.Next(bytes.Length), len = r.Next(1, Math.Min(256, bytes.Length - from + 1));
                int to = r.Next(bytes.Length);
                bytes = [.. bytes[..to], .. bytes[from..(from + len)], .. bytes[to..]];
                log.Append($"duplicate {len} bytes; ");
                break;
        }
        File.WriteAllBytes(file, bytes);
    }

    /// <summary>Short form for reports.</summary>
    public static string Describe(FuzzTarget target, int seed, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{target} seed={seed} case={index}");
}
