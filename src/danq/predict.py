"""`danq predict`: score DNA sequences with a trained DanQ model and write a TSV.

Input is a FASTA file (plain or gzip-compressed; any record length; IUPAC codes other than
A/C/G/T, N included, become all-zero "unknown" positions) or a DeepSEA-format prediction file
(HDF5 `testxdata` (N, 4, L); MATLAB v5 is read too). Every window is scored on both strands and
the two outputs are averaged (reverse-complement averaging).

Window policy. The model's input length L is read from the model. A window is L consecutive
positions of the record starting at 0-based offset `start`; positions before the record's
first base or past its last base are N.
- `center` (default): one window per record, centred on it: `start = (length - L) // 2`.
  A shorter record is padded with N on both sides (the odd N on the left), a longer one is
  cut down to its middle L bases (the odd base dropped on the right).
- `tile`: windows of L at `stride` (default L: adjacent, non-overlapping) covering the whole
  record; the fewest windows that cover it, with the tiling centred on the record so that any
  overhang (N padding) is split between the two ends. A record of at most L bases gets the
  single centred window.
The TSV has one row per window: `id`, `window_start`, `window_end`, then one column per target
(probabilities, 6 significant digits). Coordinates are 1-based, inclusive, and clipped to the
record (the padding is not counted). In `tile` mode the id is `record:start-end`; in `center`
mode it is the record id. DeepSEA-format rows are `seq_<i>` (0-based row index), 1 to L.

Target names come from, in order: an explicit file (one per line), the MLflow model's
metadata (`metadata={"target_names": [...]}` at `log_model`), the registered model version's
tags, the run's tags or params (`target_names`, a JSON list), the data folder's
metadata.json when its target count matches, else `target_<i>`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import numpy as np

from danq import tracking
from danq.data.encoding import N_CODE, codes_to_onehot, encode, reverse_complement_onehot
from danq.errors import PredictError
from danq.io import storage
from danq.io.deepsea import DataError, open_prediction_input

if TYPE_CHECKING:
    import keras

    from danq.config import Params

WindowPolicy = Literal["center", "tile"]
WINDOW_POLICIES: tuple[WindowPolicy, ...] = ("center", "tile")
TARGET_NAMES_KEY = "target_names"
DEEPSEA_SUFFIXES = (".h5", ".hdf5", ".mat")
MODEL_FILE_SUFFIXES = (".keras", ".h5")
_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 8192
_MAX_NON_TEXT_SHARE = 0.3
_TEXT_BYTES = np.zeros(256, dtype=bool)
_TEXT_BYTES[32:127] = True
_TEXT_BYTES[list(b"\t\n\r\v\f")] = True
_WHITESPACE = b" \t\r\n\v\f"
# Bytes allowed in FASTA sequence lines: the IUPAC nucleotide codes, either case.
_IUPAC_DNA = np.zeros(256, dtype=bool)
for _code in b"ACGTNRYSWKMBDHVacgtnryswkmbdhv":
    _IUPAC_DNA[_code] = True
# A URI with a scheme (models:/, runs:/, gs://, file://, mlflow-artifacts:/) goes to MLflow.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # 2+ letters: not C:/
_MODELS_ALIAS_URI = re.compile(r"^models:/([^/@]+)@([^/]+)$")
_MODELS_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")

RowLabel = tuple[str, int, int]  # row id, 1-based first and last position covered


# --------------------------------------------------------------------------- FASTA


def _open_maybe_gzip(path: str) -> IO[bytes]:
    raw = storage.open_binary(path)
    magic = raw.read(2)
    raw.seek(0)
    if magic == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


@contextmanager
def _fasta_stream(path: str) -> Iterator[IO[bytes]]:
    if not storage.exists(path):
        raise PredictError(f"{path}: file not found")
    try:
        fh = _open_maybe_gzip(path)
    except OSError as err:
        raise PredictError(f"{path}: cannot open: {err}") from None
    try:
        yield fh
    except (OSError, EOFError, zlib.error) as err:
        raise PredictError(f"{path}: unreadable (corrupt or truncated gzip data?): {err}") from None
    finally:
        fh.close()


def _check_text(path: str) -> None:
    """Refuse binary files up front: their first 'line' would give a misleading error."""
    with _fasta_stream(path) as fh:
        head = np.frombuffer(fh.read(_SNIFF_BYTES), dtype=np.uint8)
    # Text may hold a few non-ASCII bytes (accented descriptions); binary data has NULs or
    # many bytes outside printable ASCII.
    if (head == 0).any() or (~_TEXT_BYTES[head]).sum() > _MAX_NON_TEXT_SHARE * len(head):
        raise PredictError(
            f"{path}: not a text file (binary content); expected FASTA, plain or "
            f"gzip-compressed (DeepSEA-format input needs a {'/'.join(DEEPSEA_SUFFIXES)} name)"
        )


def _show_byte(value: int) -> str:
    return repr(chr(value)) if 32 <= value < 127 else f"byte 0x{value:02x}"


def read_fasta(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Stream (record id, sequence) from a FASTA file, plain or gzip-compressed.

    The id is the header's first word. Sequence lines may wrap and hold blank lines or
    whitespace; case is kept. Raises PredictError naming file, line and record on: sequence
    before the first header, a header without a name, an empty record, a repeated id, a
    character that is not an IUPAC DNA code, an empty or binary file.
    """
    label = str(path)
    _check_text(label)
    first_line_of: dict[str, int] = {}
    record_id: str | None = None
    chunks: list[bytes] = []
    length = 0

    def finished() -> tuple[str, str]:
        if not length:
            raise PredictError(
                f"{label} record '{record_id}' (line {first_line_of[record_id]}): empty record, "
                "no sequence before the next header or the end of the file"
            )
        return record_id, b"".join(chunks).decode("ascii")

    with _fasta_stream(label) as fh:
        for line_no, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if b"\0" in line:
                raise PredictError(f"{label} line {line_no}: binary content (NUL byte)")
            if line.startswith(b">"):
                if record_id is not None:
                    yield finished()
                record_id = _header_id(line, label, line_no, first_line_of)
                chunks, length = [], 0
                continue
            if record_id is None:
                raise PredictError(
                    f"{label} line {line_no}: sequence data before the first '>' header; "
                    "is this a FASTA file?"
                )
            bases = line.translate(None, _WHITESPACE)
            bad = np.flatnonzero(~_IUPAC_DNA[np.frombuffer(bases, dtype=np.uint8)])
            if bad.size:
                at = int(bad[0])
                raise PredictError(
                    f"{label} record '{record_id}' line {line_no}: character "
                    f"{_show_byte(bases[at])} at position {length + at + 1} of the record is "
                    "not an IUPAC DNA code (A C G T N R Y S W K M B D H V)"
                )
            chunks.append(bases)
            length += len(bases)
    if record_id is None:
        raise PredictError(f"{label}: no FASTA records (the file is empty)")
    yield finished()


def _header_id(line: bytes, label: str, line_no: int, first_line_of: dict[str, int]) -> str:
    words = line[1:].decode("utf-8", errors="replace").split()
    if not words:
        raise PredictError(f"{label} line {line_no}: header '>' without a record name")
    record_id = words[0]
    if record_id in first_line_of:
        raise PredictError(
            f"{label} record '{record_id}' line {line_no}: duplicate record id (first seen on "
            f"line {first_line_of[record_id]}); ids must be unique"
        )
    first_line_of[record_id] = line_no
    return record_id


# --------------------------------------------------------------------------- windows


def window_starts(length: int, seq_len: int, windows: WindowPolicy, stride: int) -> list[int]:
    """0-based record offsets of the windows scored for a record of `length` bases."""
    if windows == "center" or length <= seq_len:
        return [(length - seq_len) // 2]
    n_windows = -(-(length - seq_len) // stride) + 1
    span = (n_windows - 1) * stride + seq_len
    first = (length - span) // 2
    return [first + i * stride for i in range(n_windows)]


def window_codes(codes: np.ndarray, start: int, seq_len: int) -> np.ndarray:
    """Base codes of record positions [start, start + seq_len), N outside the record."""
    window = np.full(seq_len, N_CODE, dtype=np.uint8)
    lo, hi = max(start, 0), min(start + seq_len, len(codes))
    window[lo - start : hi - start] = codes[lo:hi]
    return window


def _fasta_batches(
    path: str, seq_len: int, batch_size: int, windows: WindowPolicy, stride: int
) -> Iterator[tuple[list[RowLabel], np.ndarray]]:
    labels: list[RowLabel] = []
    codes: list[np.ndarray] = []
    for record_id, sequence in read_fasta(path):
        record = encode(sequence)
        for start in window_starts(len(record), seq_len, windows, stride):
            first, last = max(start, 0) + 1, min(start + seq_len, len(record))
            row_id = record_id if windows == "center" else f"{record_id}:{first}-{last}"
            labels.append((row_id, first, last))
            codes.append(window_codes(record, start, seq_len))
            if len(labels) == batch_size:
                yield labels, codes_to_onehot(np.stack(codes))
                labels, codes = [], []
    if labels:
        yield labels, codes_to_onehot(np.stack(codes))


def _hdf5_batches(
    path: str, seq_len: int, batch_size: int
) -> Iterator[tuple[list[RowLabel], np.ndarray]]:
    with open_prediction_input(path) as reader:
        if reader.seq_len != seq_len:
            raise PredictError(
                f"{reader.name}: sequences are {reader.seq_len} bp but the model takes "
                f"{seq_len} bp; DeepSEA-format input must match the model (use FASTA to have "
                "sequences of other lengths windowed)"
            )
        for start, x, _ in reader.iter_chunks(batch_size):
            yield [(f"seq_{start + i}", 1, seq_len) for i in range(len(x))], x


# --------------------------------------------------------------------------- scoring


def model_seq_len(model: keras.Model) -> int:
    seq_len = model.input_shape[1]
    if not isinstance(seq_len, int):
        raise PredictError(f"model input shape {model.input_shape}: no fixed sequence length")
    return seq_len


def model_n_targets(model: keras.Model) -> int:
    return int(model.output_shape[-1])


def score_with_reverse_complement(model: keras.Model, onehot: np.ndarray) -> np.ndarray:
    """Mean of the model's outputs on each window (n, L, 4) and on its reverse complement."""
    x = onehot.astype(np.float32)
    # One call on both strands: half the per-call overhead of two calls.
    both = np.asarray(model.predict_on_batch(np.concatenate([x, reverse_complement_onehot(x)])))
    return (both[: len(x)] + both[len(x) :]) / 2


@contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name and renamed into place on success only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_predictions(
    model: keras.Model,
    batches: Iterator[tuple[list[RowLabel], np.ndarray]],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
) -> int:
    if len(target_names) != model_n_targets(model):
        raise PredictError(
            f"{len(target_names)} target names for a model with {model_n_targets(model)} outputs"
        )
    row_format = "%s\t%d\t%d" + "\t%.6g" * len(target_names) + "\n"
    rows = 0
    with _atomic_text(Path(out_tsv)) as fh:
        fh.write("\t".join(["id", "window_start", "window_end", *target_names]) + "\n")
        for labels, onehot in batches:
            scores = score_with_reverse_complement(model, onehot)
            for label, row in zip(labels, scores.tolist(), strict=True):
                fh.write(row_format % (*label, *row))
            rows += len(labels)
    return rows


def predict_fasta(
    model: keras.Model,
    fasta_path: str | os.PathLike[str],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
    batch_size: int = 100,
    windows: WindowPolicy = "center",
    stride: int | None = None,
) -> int:
    """Score every window of every FASTA record (see the module doc); return the row count."""
    seq_len = model_seq_len(model)
    _check_batch_size(batch_size)
    stride = _checked_stride(windows, stride, seq_len)
    batches = _fasta_batches(str(fasta_path), seq_len, batch_size, windows, stride)
    return _write_predictions(model, batches, out_tsv, target_names)


def predict_hdf5(
    model: keras.Model,
    hdf5_path: str | os.PathLike[str],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
    batch_size: int = 100,
) -> int:
    """Score a DeepSEA-format prediction file (testxdata (N, 4, L)); return the row count."""
    _check_batch_size(batch_size)
    batches = _hdf5_batches(str(hdf5_path), model_seq_len(model), batch_size)
    return _write_predictions(model, batches, out_tsv, target_names)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")


def _checked_stride(windows: WindowPolicy, stride: int | None, seq_len: int) -> int:
    if windows not in WINDOW_POLICIES:
        raise PredictError(f"--windows {windows!r}: expected one of {', '.join(WINDOW_POLICIES)}")
    if stride is None:
        return seq_len
    if windows != "tile":
        raise PredictError("--stride applies to --windows tile only")
    if not 1 <= stride <= seq_len:
        raise PredictError(
            f"--stride {stride}: must be between 1 and the model's window length {seq_len} "
            "so that the windows cover the record"
        )
    return stride


# --------------------------------------------------------------------------- model and names


def is_mlflow_uri(uri: str) -> bool:
    return bool(_URI_SCHEME.match(uri)) or (Path(uri) / "MLmodel").is_file()


def _use_tracking_uri(tracking_uri: str | None) -> None:
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)


def load_model(uri: str, tracking_uri: str | None = None) -> keras.Model:
    """A Keras model from a .keras file, an MLflow model folder or an MLflow model URI.

    MLflow URIs: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model, or
    any artifact URI; `tracking_uri` sets MLflow's tracking and registry server first.
    """
    import keras

    import danq.model.dropout  # noqa: F401 - registers RandomRateDropout for deserialisation

    path = Path(uri)
    if path.is_file():
        if path.suffix not in MODEL_FILE_SUFFIXES:
            raise PredictError(
                f"model {uri}: expected a {' or '.join(MODEL_FILE_SUFFIXES)} file, an MLflow "
                "model folder or an MLflow URI"
            )
        try:
            return keras.saving.load_model(path, compile=False)
        except (OSError, TypeError, ValueError) as err:
            raise PredictError(f"model {uri}: cannot load: {err}") from None
    if not is_mlflow_uri(uri):
        raise PredictError(
            f"model {uri}: no such file or MLflow model folder, and not an MLflow URI "
            "(models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model)"
        )
    import mlflow.keras
    from mlflow.exceptions import MlflowException

    _use_tracking_uri(tracking_uri)
    try:
        return mlflow.keras.load_model(uri, load_model_kwargs={"compile": False})
    except (MlflowException, OSError) as err:
        raise PredictError(f"model {uri}: cannot load: {_mlflow_message(err)}") from None


def _mlflow_message(err: Exception) -> str:
    return getattr(err, "message", None) or str(err)


def _parse_names(value: object, source: str) -> list[str]:
    names = json.loads(value) if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PredictError(f"{source}: '{TARGET_NAMES_KEY}' is not a list of names")
    return names


def mlflow_target_names(uri: str, tracking_uri: str | None = None) -> tuple[list[str], str] | None:
    """Target names stored with an MLflow model, and where they were found; None if absent.

    Registry and run records are consulted for models:/ and runs:/ URIs only: a copied model
    folder may name a run that the current tracking server does not hold.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    _use_tracking_uri(tracking_uri)
    try:
        info = mlflow.models.get_model_info(uri)
        candidates = [("the MLflow model's metadata", info.metadata or {})]
        if uri.startswith(("models:/", "runs:/")):
            client = mlflow.MlflowClient()
            if alias := _MODELS_ALIAS_URI.match(uri):
                version = client.get_model_version_by_alias(*alias.groups())
                candidates.append(("the registered model version's tags", version.tags))
            elif numbered := _MODELS_VERSION_URI.match(uri):
                version = client.get_model_version(*numbered.groups())
                candidates.append(("the registered model version's tags", version.tags))
            if info.run_id:
                run = client.get_run(info.run_id)
                candidates.append(("the MLflow run's tags", run.data.tags))
                candidates.append(("the MLflow run's params", run.data.params))
        for source, values in candidates:
            if TARGET_NAMES_KEY in values:
                return _parse_names(values[TARGET_NAMES_KEY], f"{uri} {source}"), source
    except MlflowException as err:
        raise PredictError(f"model {uri}: {_mlflow_message(err)}") from None
    except json.JSONDecodeError as err:
        raise PredictError(f"model {uri}: '{TARGET_NAMES_KEY}' is not JSON: {err}") from None
    return None


def read_target_names(path: str | os.PathLike[str]) -> list[str]:
    """One name per line; blank lines skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PredictError(f"{path}: cannot read target names: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_target_names(
    n_targets: int,
    names_file: str | os.PathLike[str] | None = None,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], str]:
    """The model's target names and where they came from (see the module doc for the order)."""
    names, source = _find_target_names(n_targets, names_file, model_uri, tracking_uri, data_dir)
    bad = [n for n in names if not n or any(c in n for c in "\t\r\n")]
    if bad:
        raise PredictError(f"{source}: target name {bad[0]!r} is empty or holds a tab or newline")
    return names, source


def _find_target_names(
    n_targets: int,
    names_file: str | os.PathLike[str] | None,
    model_uri: str | None,
    tracking_uri: str | None,
    data_dir: str | os.PathLike[str] | None,
) -> tuple[list[str], str]:
    if names_file is not None:
        names = read_target_names(names_file)
        if len(names) != n_targets:
            raise PredictError(
                f"{names_file}: {len(names)} target names, the model has {n_targets} outputs"
            )
        return names, str(names_file)
    if model_uri is not None and is_mlflow_uri(model_uri):
        stored = mlflow_target_names(model_uri, tracking_uri)
        if stored is not None and len(stored[0]) == n_targets:
            return stored
        if stored is not None:
            print(
                f"warning: {len(stored[0])} target names in {stored[1]}, the model has "
                f"{n_targets} outputs; names not used",
                file=sys.stderr,
            )
    if data_dir is not None:
        from danq.data.targets import read_metadata

        targets = (read_metadata(data_dir) or {}).get("targets", [])
        if len(targets) == n_targets:
            ordered = sorted(targets, key=lambda t: t["index"])
            return [t["name"] for t in ordered], f"{data_dir}/metadata.json"
    return [f"target_{i}" for i in range(n_targets)], "generic target_<i>"


# --------------------------------------------------------------------------- command line


def is_deepsea_input(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(DEEPSEA_SUFFIXES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `danq predict`."""
    parser.add_argument(
        "--model",
        help="model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<id>/model, "
        "an MLflow model folder or a .keras file (default: models:/<mlflow.registered_model>"
        "@champion)",
    )
    parser.add_argument(
        "--input",
        required=True,
        help="FASTA (.fa, .fasta, optionally .gz; any length, N allowed) or DeepSEA-format "
        "HDF5 (.h5, .hdf5, .mat with testxdata (N, 4, L))",
    )
    parser.add_argument("--out", required=True, help="output TSV (written atomically)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="windows scored per model call, each on both strands (default: evaluate.batch_size)",
    )
    parser.add_argument(
        "--windows",
        choices=WINDOW_POLICIES,
        default="center",
        help="center: one window of the model's length centred on each record (N-padded or "
        "cropped); tile: windows at --stride covering each record, one row each",
    )
    parser.add_argument(
        "--stride", type=int, help="tile step in bp (default: the window length; tile only)"
    )
    parser.add_argument(
        "--target-names", help="file with one target name per line (default: from the model)"
    )


def run(args: argparse.Namespace, params: Params) -> int:
    """Run `danq predict`; return the exit status (1 with 'error: ...' on stderr)."""
    # MLflow's download progress bars are noise on a command line.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return _run(args, params)
    except (PredictError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, params: Params) -> int:
    model_uri = args.model or f"models:/{params.mlflow.registered_model}@champion"
    tracking_uri = tracking.resolve_uri(params.mlflow)
    batch_size = args.batch_size or params.evaluate.batch_size
    started = time.monotonic()
    model = load_model(model_uri, tracking_uri)
    names, names_source = resolve_target_names(
        model_n_targets(model),
        names_file=args.target_names,
        model_uri=model_uri,
        tracking_uri=tracking_uri,
        data_dir=params.paths.data_dir,
    )
    if is_deepsea_input(args.input):
        if args.windows != "center" or args.stride is not None:
            raise PredictError(
                f"{args.input}: DeepSEA-format sequences already have the model's length; "
                "--windows tile and --stride apply to FASTA input only"
            )
        rows = predict_hdf5(model, args.input, args.out, names, batch_size)
        policy = "whole sequences"
    else:
        rows = predict_fasta(
            model, args.input, args.out, names, batch_size, args.windows, args.stride
        )
        policy = f"{args.windows} windows of {model_seq_len(model)} bp"
        if args.windows == "tile":
            policy += f", stride {args.stride or model_seq_len(model)}"
    print(
        f"wrote {rows} rows x {len(names)} targets to {args.out} in "
        f"{time.monotonic() - started:.1f} s (model {model_uri}; {policy}; both strands "
        f"averaged; target names from {names_source})"
    )
    return 0
