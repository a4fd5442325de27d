#!/bin/sh
# Regenerates tokenizer.model, tokenizer.json and expected.json (needs Debian's sentencepiece and
# python3-sentencepiece: apt-get install -y sentencepiece python3-sentencepiece). The tests do not.
set -e
cd "$(dirname "$0")"
L=/usr/share/common-licenses
{ cat $L/Apache-2.0 $L/Artistic $L/BSD $L/GPL-2 $L/GPL-3 $L/LGPL-2.1 $L/MPL-2.0
  for i in 1 2 3 4 5; do cat extra_corpus.txt; done; } > /tmp/jamba_tok_corpus.txt
spm_train --input=/tmp/jamba_tok_corpus.txt --model_prefix=/tmp/jamba_test_spm --model_type=bpe --vocab_size=1500 \
  --byte_fallback=true --split_digits=true --allow_whitespace_only_pieces=true \
  --remove_extra_whitespaces=false --normalization_rule_name=identity --add_dummy_prefix=true \
  --character_coverage=0.9995 --max_sentence_length=100000 \
  --pad_id=0 --pad_piece='<|pad|>' --bos_id=1 --bos_piece='<|startoftext|>' \
  --eos_id=2 --eos_piece='<|endoftext|>' --unk_id=3 --unk_piece='<|unk|>' \
  --control_symbols='<|system|>,<|user|>,<|assistant|>' \
  --user_defined_symbols='<|bom|>,<|eom|>,<tool_calls>,</tool_calls>'
cp /tmp/jamba_test_spm.model tokenizer.model
/usr/bin/python3 convert.py tokenizer.model tokenizer.json
/usr/bin/python3 gen_expected.py
