#!/usr/bin/env bash
# Word-time accuracy over an hour of known-boundary audio and the side-by-side comparison
# with pocketsphinx, for models trained by scripts/asr_recipe.sh (or any speech model):
#   scripts/asr_benchmarks.sh BIDIRECTIONAL_MODEL_DIR [CAUSAL_MODEL_DIR]
# Needs the recipe's corpus and real sets (OUT, default runs/asr-recipe) and pocketsphinx
# (pip install -e '.[bench]'). Override with environment variables, e.g.
#   MINUTES=10 LIMIT=50 scripts/asr_benchmarks.sh runs/asr-recipe/runs/.../checkpoint_000600
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT="${OUT:-runs/asr-recipe}"
MINUTES="${MINUTES:-60}"   # length of the known-boundary file
LIMIT="${LIMIT:-}"         # at most this many utterances per real set (empty: all)
SEED="${SEED:-0}"
THREADS="${THREADS:-1}"
if [ $# -lt 1 ]; then
  echo "usage: $0 MODEL_DIR [CAUSAL_MODEL_DIR]" >&2
  exit 2
fi
models=()
for m in "$@"; do models+=(--model "$m"); done
LM="$OUT/char6.arpa"
if [ ! -f "$LM" ]; then  # the recipe's character 6-gram model of the training sentences
  "$PYTHON" - "$OUT/corpus/train.jsonl" "$LM" <<'PY'
import json, sys
from gfssm.tasks.asr.lm import write_arpa
texts = sorted({json.loads(line)["text"] for line in open(sys.argv[1])})
write_arpa(texts, sys.argv[2], order=6, units="chars")
PY
fi
"$PYTHON" tests/benchmarks/asr_word_times.py "${models[@]}" --minutes "$MINUTES" \
  --seed "$SEED" --kenlm "$LM" --lm-weight 0.5 --threads "$THREADS" \
  --json "$OUT/word_times.json" | grep -v '^[-*]' | tee "$OUT/word_times.txt"
"$PYTHON" tests/benchmarks/asr_peers.py --model "$1" --data "$OUT/data" --kenlm "$LM" \
  --lm-weight 0.5 --threads "$THREADS" ${LIMIT:+--limit "$LIMIT"} | grep -v '^[-*]' \
  | tee "$OUT/peers.txt"
