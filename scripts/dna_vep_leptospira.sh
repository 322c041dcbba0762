#!/usr/bin/env bash
# Zero-shot variant effects on real annotation: Leptospira draft genome (75 contigs, 4.59 Mb,
# 4,162 CDS), whole contigs held out of training, through the `gfssm` command:
#   1. fetch the GenBank file from Debian (any2fasta-examples, GPL-3; `apt-get download`,
#      no root needed once the package lists exist) into OUT/data, unless it is there;
#   2. train a DNA model (the ecoli15 architecture) for MINUTES of wall clock in one
#      process, holding out three contigs (470,411 bases, 10.2%): skipped when OUT/train.log
#      already holds a finished run;
#   3. `gfssm eval dna-vep` on the held-out contigs: every SNV of their CDS, model vs the
#      order-k Markov baseline fitted on the training contigs only, by position, codon and
#      amino-acid score (about 8 minutes with 2 actors on 2 cores; --no-codon-score in the
#      command below, position score only: under 2).
# Everything goes below OUT (default leptospira-vep, relative to the current folder).
# Override with environment variables, e.g. MINUTES=5 OUT=lepto scripts/dna_vep_leptospira.sh
set -euo pipefail
GFSSM="${GFSSM:-gfssm}"
OUT="${OUT:-leptospira-vep}"
MINUTES="${MINUTES:-30}"
STEPS="${STEPS:-2600}"  # the learning-rate schedule's length; the time budget may end it first
THREADS="${THREADS:-2}"  # on cores shared with other work, THREADS=1 is faster (README: Threads)
ACTORS="${ACTORS:-2}"  # one per core
HELD_OUT="[NZ_AHMY02000016.1,NZ_AHMY02000034.1,NZ_AHMY02000067.1]"
DATA="$OUT/data"
GENBANK="$DATA/test.gbk.gz"
mkdir -p "$DATA"

if [ ! -f "$GENBANK" ]; then
  (cd "$DATA" && apt-get download any2fasta-examples && dpkg -x any2fasta-examples_*.deb deb)
  cp "$DATA/deb/usr/share/doc/any2fasta/examples/test.gbk.gz" "$GENBANK"
fi

if ! grep -q '^run [0-9a-f]\{8,\} (.*) finished' "$OUT/train.log" 2>/dev/null; then
  start=$(date +%s)
  "$GFSSM" train dna --local --config ecoli15 \
    task.fasta="$GENBANK" task.val_contigs="$HELD_OUT" \
    train.steps="$STEPS" train.time_budget_minutes="$MINUTES" \
    train.num_workers=1 train.cpus_per_worker="$THREADS" train.storage_path="$OUT/runs" \
    --tracking-uri "sqlite:///$OUT/mlflow.db" | tee "$OUT/train.log"
  echo "training wall clock: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.log"
fi
RUN_ID="$(sed -n 's/^run \([0-9a-f]\{8,\}\) (.*) finished.*/\1/p' "$OUT/train.log" | tail -1)"
if [ -z "$RUN_ID" ]; then
  echo "dna_vep_leptospira.sh: no 'run <id> (...) finished' line in $OUT/train.log" >&2
  exit 1
fi

# --contigs defaults to the model's held-out contigs (task.val_contigs above).
start=$(date +%s)
"$GFSSM" eval dna-vep --model "$RUN_ID" --tracking-uri "sqlite:///$OUT/mlflow.db" \
  --genbank "$GENBANK" --out "$OUT/vep" --actors "$ACTORS" | tee "$OUT/vep.log"
echo "evaluation wall clock: $(( $(date +%s) - start )) s" | tee -a "$OUT/vep.log"
