"""What the stages hand each other: file names, MLflow tag keys, and how files are written.

Every name a stage writes and another reads is defined here once, and every output is written
atomically: a reader, or a run killed at any moment, sees the old file or the new one, never a
part of one, and a folder output appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from danq.io import storage

# --- a training run's folder (build/models/<variant>) ----------------------------------------
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
TRAINING_CURVE_FILE = "training_curve.png"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE_FILE = "state.json"

# --- an evaluation's folder (build/eval/<variant>) -------------------------------------------
METRICS_FILE = "metrics.json"
PER_TARGET_FILE = "per_target.tsv"
PREDICTIONS_FILE = "predictions.npz"
CURVES_FILE = "curves.json"
VALID_DIR = "valid"  # the validation split's evaluation, beside the test split's files
EVAL_SEEDS_DIR = "seeds"  # with train.seeds > 1: one evaluation per seed
SEEDS_FILE = "seeds.json"  # in a variant's training folder when train.seeds > 1

# --- other stage outputs ---------------------------------------------------------------------
VALIDATION_REPORT_FILE = "report.json"
DATA_DOCS_DIR = "data_docs"
DATA_DOCS_INDEX_FILE = "index.html"  # Great Expectations' entry page of the data docs
SHARD_MANIFEST_FILE = "manifest.json"
SHARD_TARGETS_FILE = "targets.json"  # in each split folder: target names and categories
DATA_METADATA_FILE = "metadata.json"
SYNTH_GENERATOR = "danq data synth"  # DATA_METADATA_FILE's "generator" on the synthetic data
# The genome record under DATA_METADATA_FILE's and a logged model's metadata (MLmodel):
# {"build", "fasta_md5", "contigs": {name: length}}; `danq variant-effect` checks it.
GENOME_METADATA_KEY = "genome"
FROM_BED_GENERATOR = "danq data from-bed"  # ... on data built from a genome FASTA + peaks
# Beside each split of `danq data from-bed` output: the bin of every forward sample, in order.
DATA_BINS_SUFFIX = "_bins.bed"  # train_bins.bed, valid_bins.bed, test_bins.bed
# The synthetic genome's folder (`danq data synth-genome`); its metadata file is written last.
SYNTH_GENOME_FASTA_FILE = "genome.fa"  # + genome.fa.fai
SYNTH_GENOME_MOTIFS_FILE = "motifs.bed"  # BED9: thickStart/thickEnd = the instance's core base
SYNTH_GENOME_VARIANTS_FILE = "variants.vcf.gz"  # + .tbi; INFO SYNTH_CLASS, MOTIF
SYNTH_GENOME_METADATA_FILE = "genome.json"
SYNTH_GENOME_GENERATOR = "danq data synth-genome"
# `danq ism` output folder: per sequence <name>.npz and <name>.<target index>.<target>.png,
# and a summary table (written last).
ISM_ARRAY_SUFFIX = ".npz"
ISM_PLOT_SUFFIX = ".png"
ISM_SUMMARY_FILE = "summary.tsv"
# `danq explain attributions` output folder: per sequence and target
# <name>.<target index>.<target>.png, and the arrays of the run (written last).
ATTRIBUTIONS_ARRAY_FILE = "attributions.npz"
# `danq explain filters` output folder (<work_dir>/explain/<variant> in the pipeline): the filters
# as MEME motifs, their best JASPAR matches, the report (HTML self-contained; Markdown with the
# logos/ PNGs), and a summary JSON written last; logged to the training run under "explain".
EXPLAIN_DIR = "explain"  # under work_dir, one folder per variant
EXPLAIN_MEME_FILE = "filters.meme"
EXPLAIN_MATCHES_FILE = "matches.tsv"
EXPLAIN_REPORT_HTML_FILE = "report.html"
EXPLAIN_REPORT_MD_FILE = "report.md"
EXPLAIN_LOGOS_DIR = "logos"
EXPLAIN_SUMMARY_FILE = "summary.json"
EXPLAIN_ARTIFACT_PATH = "explain"
# The PWM-scan oracle of the synthetic data (`danq data oracle`): <work_dir>/oracle holds
# METRICS_FILE and PER_TARGET_FILE, scored on the test split like an evaluation.
ORACLE_DIR = "oracle"
BLESSING_FILE = "blessing.json"
COMPARISON_JSON_FILE = "comparison.json"
COMPARISON_MD_FILE = "comparison.md"
COMPARISON_HTML_FILE = "comparison.html"

# --- a study's report folder (build/study) and run folders (build/study-runs/...) -------------
STUDY_FILE = "study.json"
STUDY_RECORD_FILE = "record.json"
STUDY_RUNS_JSON_FILE = "runs.json"
STUDY_RUNS_CSV_FILE = "runs.csv"
STUDY_ANALYSIS_FILE = "analysis.json"
STUDY_REPORT_MD_FILE = "report.md"
STUDY_REPORT_HTML_FILE = "report.html"

# --- MLflow tag keys -------------------------------------------------------------------------
TAG_VARIANT = "danq.variant"
TAG_SETTINGS_HASH = "danq.settings_hash"
TAG_DEVICES = "danq.devices"
TAG_RESUMED_AT = "danq.resumed_at_epochs"
TAG_BLESSED = "danq.blessed"
TAG_CHOSEN = "danq.chosen"
TAG_DECISION = "danq.decision"
TAG_REASON = "danq.reason"
TAG_DELTA_VS_CHAMPION = "danq.delta_vs_champion"
TAG_REGISTERED_VERSION = "danq.registered_version"
TAG_PREDICTIONS_MD5 = "danq.predictions_md5"
TAG_METRIC_PREFIX = "metric."  # + auroc / aupr: a model version's test metrics
TAG_STUDY_ID = "danq.study.id"
TAG_STUDY_ROLE = "danq.study.role"
TAG_STUDY_ARM = "danq.study.arm"
TAG_STUDY_SEED_INDEX = "danq.study.seed_index"
TAG_DATA_PATH = "data.path"
TAG_DATA_MD5 = "data.md5"
TAG_DATA_REMOTE = "data.dvc_remote"
TAG_GIT_COMMIT = "git.commit"
TAG_GIT_DIRTY = "git.dirty"
TAG_VERSIONS_PREFIX = "versions."
# A pipeline run's lineage (danq.kfp.lineage): which KFP run, code and data made a run or version.
TAG_KFP_RUN_ID = "kfp.run_id"
TAG_KFP_PIPELINE = "kfp.pipeline"
TAG_KFP_PIPELINE_VERSION = "kfp.pipeline_version"
TAG_KFP_IMAGE = "kfp.image"
TAG_DATA_URI = "data.uri"
TAG_DATA_FINGERPRINT = "data.fingerprint"
# The registry's integrity and alias bookkeeping (danq.model.integrity, danq.promotion.registry).
TAG_MODEL_SHA256 = "danq.model_sha256"  # sha256 of the model file: logged model, run, version
TAG_REPLACED_VERSION = "danq.replaced_version"  # on a version made champion: the one it replaced
TAG_ROLLED_BACK = "danq.rolled_back"  # on a version taken off champion by a rollback
TAG_ALIAS_MOVE = "danq.alias_move"  # on the registered model while an alias move is under way


def temporary_name(path: Path) -> Path:
    """A hidden name beside path that keeps its ending: Keras and numpy choose the format from
    it (.keras, .weights.h5, .npz)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Call write(tmp) on a temporary name in the same folder, flush it to disk, then rename it
    into place. The folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk, so that a rename never publishes a file whose
    bytes a crash could still lose."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], document: Any, *, allow_nan: bool = True) -> None:
    """allow_nan=False: a NaN or infinity raises ValueError (standard JSON has neither)."""
    write_text(path, json.dumps(document, indent=2, allow_nan=allow_nan) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def atomic_text(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A text file streamed under a temporary name and renamed into place on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def staging_parent(out_dir: str | os.PathLike[str]) -> str | None:
    """Where to stage a folder output: beside a local out_dir (same filesystem, so the final
    rename is atomic), or the system's temporary folder (None) for gs://."""
    if storage.is_remote(out_dir):
        return None
    parent = Path(out_dir).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return str(parent)


def publish_dir(staging: Path, out_dir: str | os.PathLike[str], commit_marker: str) -> None:
    """Put a finished folder in place of out_dir.

    Locally: two renames, so out_dir is the old folder or the new one. On gs://: the old
    objects are removed and the new ones uploaded with commit_marker last, so its presence
    marks a complete upload (readers check for it)."""
    out_dir = str(out_dir)
    if storage.is_remote(out_dir):
        storage.remove_tree(out_dir)
        for entry in sorted(staging.iterdir(), key=lambda p: (p.name == commit_marker, p.name)):
            storage.upload(entry, storage.join(out_dir, entry.name))
        return
    for written in staging.rglob("*"):
        if written.is_file() and not written.is_symlink():
            fsync_file(written)
    target = Path(out_dir)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
