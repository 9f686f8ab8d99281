#!/usr/bin/env bash
# Issue 16's targets for `edgelabels tune`, each with its exact commands (run from the repository root, with
# ../shared/data beside it). Long: about 3 hours on a 2-core CPU. One target at a time:
#
#   bash benchmarks/tune_targets.sh pneumonia   # 1000 images per label, grouped split: plain config vs --budget 60m
#   bash benchmarks/tune_targets.sh bees        # bees-yolo: plain configs/bees.yaml vs --budget 30m
#   bash benchmarks/tune_targets.sh gpu         # on a GPU machine: a 10-minute study under KERAS_BACKEND=jax
#
# Every run writes under runs/tune-targets/; `time` gives each command's wall time. The plain run and the
# study use the same config seed, data and fractions, so their splits are the same images: the comparison
# (benchmarks/tune_compare.py) is paired, on the test split, which the study touches once, for its chosen run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EL=${EL:-.venv/bin/edgelabels}
OUT=runs/tune-targets
mkdir -p "$OUT"

pneumonia() {
    # The Rekognition blog's protocol size: at most 1000 images per label, one patient never in two splits
    # (configs/pneumonia.yaml's group_by).
    local subset=(--set data.limit_per_label=1000)
    time "$EL" train configs/pneumonia.yaml "${subset[@]}" --out "$OUT/pneumonia-plain"
    "$EL" evaluate "$OUT/pneumonia-plain" --gradcam 0
    time "$EL" tune configs/pneumonia.yaml "${subset[@]}" --budget 60m --out "$OUT/pneumonia-tune"
    "$PY" benchmarks/tune_compare.py pneumonia "$OUT/pneumonia-plain" "$OUT/pneumonia-tune/best" \
        | tee "$OUT/pneumonia-compare.json"
}

bees() {
    time "$EL" train configs/bees.yaml --out "$OUT/bees-plain"
    "$EL" evaluate "$OUT/bees-plain"
    time "$EL" tune configs/bees.yaml --budget 30m --out "$OUT/bees-tune"
    "$PY" benchmarks/tune_compare.py bees "$OUT/bees-plain" "$OUT/bees-tune/best" | tee "$OUT/bees-compare.json"
}

gpu() {
    # Trials per hour there against here: count the rows of trials.csv over the budget.
    time KERAS_BACKEND=jax "$EL" tune configs/bees.yaml --budget 10m --out "$OUT/bees-tune-jax"
    "$PY" - "$OUT/bees-tune-jax" <<'EOF'
import csv, json, sys
from pathlib import Path
tune = Path(sys.argv[1])
rows = list(csv.DictReader((tune / "trials.csv").open()))
spent = json.loads((tune / "budget.json").read_text())["spent_s"]
print(f"{len(rows)} trials in {spent:.0f} s: {len(rows) * 3600 / spent:.1f} trials per hour")
EOF
}

case "${1:-}" in
    pneumonia) pneumonia ;;
    bees) bees ;;
    gpu) gpu ;;
    *) echo "usage: bash benchmarks/tune_targets.sh pneumonia|bees|gpu" >&2; exit 2 ;;
esac
