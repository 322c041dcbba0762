#!/usr/bin/env bash
# Fetch the speech data this project uses, from PyPI and Debian only:
#   - real evaluation recordings (pocketsphinx test data; asterisk telephony prompts, 8 kHz)
#     with one JSONL manifest per set;
#   - Debian fortune files: English sentences for the espeak-ng training corpus.
# Needs apt-get (for `apt-get download`, no root needed once the package lists exist) and pip.
set -euo pipefail
OUT="${1:-runs/speech-data}"
PYTHON="${PYTHON:-python}"
"$PYTHON" -m gfssm.tasks.asr.realdata --out "$OUT"
