#!/usr/bin/env bash
# Adds two stages to the DVC project in the current folder (`dvc init` first), writing its
# dvc.yaml: `data` builds data/ with `danq data from-bed` from the genome FASTA and the peaks/
# folder (the sheet and every peak file: DVC hashes the whole folder) with the from_bed
# settings of params.yaml as params; `validate` runs the data gate on it. Then `dvc repro`
# builds and checks the data, and again whenever a peak file, the FASTA or a setting changes.
# FASTA=path/to/genome.fa.gz overrides where the genome lies (default genome/genome.fa.gz).
set -euo pipefail
FASTA="${FASTA:-genome/genome.fa.gz}"
dvc stage add --force -n data -p from_bed -d "$FASTA" -d peaks -o data \
  "danq data from-bed --fasta $FASTA --peaks peaks/peaks.tsv --out data --quiet"
dvc stage add --force -n validate -d data -o build/validation \
  "danq validate --data data --out build/validation"
