spm_train --input=/tmp/corpus.txt --model_prefix=jamba_test_spm --model_type=bpe --vocab_size=1500 \
  --byte_fallback=true --split_digits=true --allow_whitespace_only_pieces=true \
  --remove_extra_whitespaces=false --normalization_rule_name=identity --add_dummy_prefix=true \
  --character_coverage=0.9995 --max_sentence_length=100000 \
  --pad_id=0 --pad_piece='<|pad|>' --bos_id=1 --bos_piece='<|startoftext|>' \
  --eos_id=2 --eos_piece='<|endoftext|>' --unk_id=3 --unk_piece='<|unk|>' \
  --control_symbols='<|system|>,<|user|>,<|assistant|>' \
  --user_defined_symbols='<|bom|>,<|eom|>,<tool_calls>,</tool_calls>'
