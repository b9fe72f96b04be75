#!/usr/bin/env bash
# The main job on the embedded default: synthetic DeepSEA-format data, versioned with DVC,
# then the dvc.yaml pipeline. Called by `make run` with the project's .venv on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

danq data synth
# Re-hash data/ into the DVC cache: synth is deterministic, so data.dvc stays unchanged.
dvc add --quiet data
if ! git diff --quiet -- data.dvc 2>/dev/null; then
  echo "note: data/ differs from the version recorded in data.dvc (synth settings changed?)"
fi
danq data info
dvc repro
