#!/usr/bin/env bash
# dpformer's Hugging Face layout and GPT-2 tokenizer against `transformers` and `tokenizers`
# (tests/hf_transformers_check.py: exported random-weight models, tied and untied, give transformers'
# perplexity line by line to 1e-4; tokenizer ids equal tokenizers' on reference.jsonl). Skipped where
# those packages or the GPT-2 tokenizer files are missing (they are not Debian packages; the GPU machine
# has them, and `make gpu-check` runs this test too).
set -u
. "$(dirname "$0")/clilib.sh"
cli_init cli_hf_transformers "$@"
SRC=${DPFORMER_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TOK=${DPFORMER_TOKENIZERS:-$SRC/../shared/tokenizers}/gpt2
[ -f "$TOK/encoder.json" ] && [ -f "$TOK/vocab.bpe" ] || { echo "cli_hf_transformers: skipped: no GPT-2 tokenizer at $TOK"; exit 77; }
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" > /dev/null && "$p" -c 'import torch, transformers, tokenizers' 2> /dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "cli_hf_transformers: skipped: no python3 with torch, transformers and tokenizers"; exit 77; }
"$PY" "$SRC/tests/hf_transformers_check.py" "$BIN" "$TOK" "$TMP/work"
rc=$?
[ "$rc" -eq 0 ] || fail "hf_transformers_check.py exited $rc"
cli_finish
