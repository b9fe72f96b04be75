#!/usr/bin/env bash
# The main job on the embedded default: synthetic DeepSEA-format data versioned with DVC, then
# the dvc.yaml pipeline (validate -> prepare -> train x2 -> evaluate x2 -> report -> promote).
# Called by `make run` with the project's .venv on PATH; extra arguments go to `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

danq data synth
# Re-hash data/ into the DVC cache: synth is deterministic, so data.dvc stays unchanged.
dvc add --quiet data
if ! git diff --quiet -- data.dvc 2>/dev/null; then
  echo "note: data/ differs from the version recorded in data.dvc (synth settings changed?)"
fi
danq data info
dvc repro "$@"

echo
echo "== comparison (build/report/comparison.md) =="
sed -n '3,/^$/p' build/report/comparison.md
grep -E '^Verdict' build/report/comparison.md || true
echo
danq registry show | head -20
echo
echo "finished in $(( $(date +%s) - started )) s"
echo "metrics:  dvc metrics show, dvc metrics diff main  (metrics/*.json, committed to git)"
echo "plots:    dvc plots show (writes dvc_plots/index.html), dvc plots diff main"
echo "MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000  (then open http://127.0.0.1:5000)"
