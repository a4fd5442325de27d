#!/usr/bin/python3
"""Converts tokenizer.model (SentencePiece BPE) to a Hugging Face tokenizer.json, the way
transformers' LlamaConverter (legacy=True) + SentencePieceExtractor do it. No protobuf module
needed: the ModelProto is parsed by hand (field 1 = repeated SentencePiece{1 piece, 2 score, 3 type})."""
import json, struct, sys

def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7F) << s; s += 7
        if c < 0x80: return r, i

def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        fn, wt = key >> 3, key & 7
        if wt == 0: v, i = varint(b, i)
        elif wt == 1: v = b[i:i+8]; i += 8
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i+n]; i += n
        elif wt == 5: v = b[i:i+4]; i += 4
        else: raise ValueError(wt)
        yield fn, wt, v

def load_pieces(path):
    data = open(path, 'rb').read()
    pieces = []
    for fn, wt, v in fields(data):
        if fn == 1:
            piece, score, typ = None, 0.0, 1
            for f2, w2, v2 in fields(v):
                if f2 == 1: piece = v2.decode('utf-8')
                elif f2 == 2: score = struct.unpack('<f', v2)[0]
                elif f2 == 3: typ = v2
            pieces.append((piece, score, typ))
    return pieces

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

def main(model_path, out_path):
    pieces = load_pieces(model_path)
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    # SentencePieceExtractor.extract(vocab_scores) with reverse=True
    merges = []
    for piece, score, _ in pieces:
        local = []
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                local.append((l, r, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    unk = next(p for p, _, t in pieces if t == UNKNOWN)
    added = []
    for i, (p, _, t) in enumerate(pieces):
        if t in (UNKNOWN, CONTROL, USER_DEFINED):
            added.append({"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": t != USER_DEFINED})
    bos = pieces[1][0]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [1], "tokens": [bos]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{l} {r}" for l, r, _ in merges]},
    }
    with open(out_path, 'w', encoding='utf-8') as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    print(f"{len(vocab)} pieces, {len(merges)} merges, {len(added)} added tokens -> {out_path}")

if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tokenizer.model', sys.argv[2] if len(sys.argv) > 2 else 'tokenizer.json')
