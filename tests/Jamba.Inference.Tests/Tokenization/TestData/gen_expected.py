#!/usr/bin/python3
"""Writes expected.json: ids/pieces/decoded text from the real SentencePiece library (Debian
python3-sentencepiece, the same libsentencepiece as spm_encode) for the test sentences below.
Single-line cases are cross-checked against the spm_encode / spm_decode command line tools."""
import json, subprocess, sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file='tokenizer.model')
texts = [
    "Hello world",
    "The GNU General Public License is a free, copyleft license for software and other kinds of works.",
    "hello",
    "",
    " ",
    "  ",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple     spaces    inside",
    "tab\tseparated\tvalues",
    "line one\nline two\n\nline four\n",
    "\n",
    "\nstarts with newline",
    "Digits 0123456789 and 3.14159 and 1,000,000 and 2024-05-17",
    "Café crème brûlée, naïve façade, jalapeño, Ångström",
    "Les élèves étudient à l'école",
    "日本語のテキストです。東京は日本の首都です。",
    "中文文本。我们学习中文。",
    "한국어 텍스트입니다",
    "Привет, мир!",
    "Emoji: 😀🎉👍🏽 and 🤖",
    "Family: 👨‍👩‍👧‍👦 flag: 🇺🇸",
    "Rare chars: ∮ ⊕ ℵ ∞ ≠ ≤ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ÿ",
    "Mixed: abc日本😀xyz  é\t\n🎉end",
    "Code: def foo(x):\n    return x * 2  # comment",
    "{\"key\": \"value\", \"list\": [1, 2, 3]}",
    "▁ literal lower one eighth block ▁▁",
    "<0x41> looks like a byte token",
    "User-defined <|bom|> and <|eom|> inside",
    "<tool_calls>[{\"name\": \"f\"}]</tool_calls>",
    "Hello<|bom|>world",
    "<|bom|>starts with a user symbol",
    "Control strings <|startoftext|> <|endoftext|> <|system|> are plain text to spm",
    "a",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "Zürich, São Paulo, Kraków, İstanbul, Reykjavík",
]
cases = []
for t in texts:
    ids = sp.encode(t)
    pieces = sp.encode(t, out_type=str)
    dec = sp.decode(ids)
    if "\n" not in t and "\r" not in t and t != "":
        cli = subprocess.run(["spm_encode", "--model=tokenizer.model", "--output_format=id"], input=t + "\n",
                             capture_output=True, text=True, check=True).stdout.rstrip("\n")
        assert cli.split() == [str(i) for i in ids], (t, cli, ids)
        clip = subprocess.run(["spm_encode", "--model=tokenizer.model", "--output_format=piece"], input=t + "\n",
                              capture_output=True, text=True, check=True).stdout.rstrip("\n")
        assert clip.split(" ") == pieces or clip.split() == [p for p in pieces if p], (t, clip, pieces)
    cases.append({"text": t, "ids": ids, "pieces": pieces, "decoded": dec})
# user-defined / control piece ids, for tests
meta = {"vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id()}
with open('expected.json', 'w', encoding='utf-8') as f:
    json.dump({"meta": meta, "cases": cases}, f, ensure_ascii=False, indent=1)
print(len(cases), "cases")
for c in cases: print(repr(c["text"][:40]), c["pieces"][:12], repr(c["decoded"][:40]))

# ---- Added-token cases: the Hugging Face pipeline (split out added tokens, longest match first,
# then encode each remaining segment).  legacy=True: every segment gets the dummy prefix "▁"
# (normalizer Prepend); legacy=False / Metaspace prepend_scheme "first": only a segment that starts
# at offset 0 of the input does.  Segments are encoded with the real SentencePiece, with a copy of
# the model whose NormalizerSpec.add_dummy_prefix is false for the no-prefix case.
import struct as _st

def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7F) << s; s += 7
        if c < 0x80: return r, i

def _enc_varint(n):
    out = bytearray()
    while True:
        c = n & 0x7F; n >>= 7
        if n: out.append(c | 0x80)
        else: out.append(c); return bytes(out)

def _fields(b):
    i = 0
    while i < len(b):
        start = i
        key, i = _varint(b, i)
        wt = key & 7
        if wt == 0: _, i = _varint(b, i)
        elif wt == 1: i += 8
        elif wt == 2:
            n, i = _varint(b, i); i += n
        elif wt == 5: i += 4
        yield key >> 3, wt, b[start:i]

def _payload(raw):
    _, i = _varint(raw, 0)
    n, i = _varint(raw, i)
    return raw[i:i+n]

def no_prefix_model(path):
    data = open(path, 'rb').read()
    out = bytearray()
    for fn, wt, raw in _fields(data):
        if fn == 3 and wt == 2:  # normalizer_spec
            inner = bytearray()
            for f2, w2, r2 in _fields(_payload(raw)):
                if f2 != 3: inner += r2
            inner += _enc_varint((3 << 3) | 0) + _enc_varint(0)  # add_dummy_prefix = false
            out += _enc_varint((3 << 3) | 2) + _enc_varint(len(inner)) + inner
        else:
            out += raw
    return bytes(out)

sp_np = spm.SentencePieceProcessor(model_proto=no_prefix_model('tokenizer.model'))
assert sp_np.encode("hello", out_type=str)[0] != "▁h"

cfg = json.load(open('tokenizer_config.json'))
added = {int(k): v for k, v in cfg["added_tokens_decoder"].items()}

def hf_encode(text, legacy, parse_special):
    toks = sorted(((v["content"], k) for k, v in added.items() if parse_special or not v["special"]),
                  key=lambda x: -len(x[0]))
    ids, seg_start, i = [], 0, 0
    def flush(seg, at):
        if seg == "": return
        ids.extend(sp.encode(seg) if (legacy or at == 0) else sp_np.encode(seg))
    while i < len(text):
        m = next(((c, k) for c, k in toks if text.startswith(c, i)), None)
        if m:
            flush(text[seg_start:i], seg_start); ids.append(m[1]); i += len(m[0]); seg_start = i
        else:
            i += 1
    flush(text[seg_start:], seg_start)
    return ids

special_texts = [
    "User-defined <|bom|> and <|eom|> inside",
    "<tool_calls>[{\"name\": \"f\"}]</tool_calls>",
    "Hello<|bom|>world",
    "<|bom|>starts with a user symbol",
    "Control strings <|startoftext|> <|endoftext|> <|system|> are special",
    "<|startoftext|><|bom|><|system|> You are a helpful assistant.<|eom|><|bom|><|user|> Hi! 😀<|eom|><|bom|><|assistant|>",
    "<|startoftext|>Hello",
    "Ends with a special<|endoftext|>",
    "Adjacent<|eom|><|bom|>tokens",
    "Partial <|bom and <|eom|| and <tool_calls are not tokens",
    "Nested <|<|bom|>|> brackets",
]
special_cases = []
for t in special_texts:
    special_cases.append({"text": t,
        "legacy": hf_encode(t, True, True), "first": hf_encode(t, False, True),
        "spm": sp.encode(t)})
with open('expected.json', 'w', encoding='utf-8') as f:
    json.dump({"meta": meta, "cases": cases, "special_cases": special_cases}, f, ensure_ascii=False, indent=1)
for c in special_cases:
    print(repr(c["text"][:50]), [sp.id_to_piece(i) for i in c["legacy"]][:14])
    print("   first:", [sp.id_to_piece(i) for i in c["first"]][:14])
