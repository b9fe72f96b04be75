"""`danq data synth | prepare | info | fetch-deepsea`."""

from __future__ import annotations

import argparse
import json
import time

from danq.config import SPLITS, Params
from danq.io import storage


def cmd_synth(args: argparse.Namespace, params: Params) -> int:
    from danq.data.synth import write_dataset

    out = args.out or params.data_dir
    started = time.monotonic()
    write_dataset(out, params.synth, params.seed)
    cfg = params.synth
    print(
        f"wrote synthetic DeepSEA-format data to {out}/ in {time.monotonic() - started:.1f} s: "
        f"train {2 * cfg.n_train}, valid {2 * cfg.n_valid}, test {2 * cfg.n_test} sequences "
        f"of {cfg.seq_len} bp (forward + reverse complement)"
    )
    return 0


def cmd_prepare(args: argparse.Namespace, params: Params) -> int:
    from danq.data.shards import prepare_dataset

    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, "shards")
    started = time.monotonic()
    manifests = prepare_dataset(data, out, params.prepare, tuple(args.splits), not args.quiet)
    elapsed = time.monotonic() - started
    total = sum(m.n_samples for m in manifests.values())
    for split, m in manifests.items():
        print(
            f"{split}: {m.n_samples} samples x {m.seq_len} bp, {m.n_targets} targets, "
            f"{len(m.shards)} shards -> {storage.join(out, split)}"
        )
    print(f"prepared {total} samples in {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f}/s)")
    return 0


def cmd_info(args: argparse.Namespace, params: Params) -> int:
    """A summary of a DeepSEA-format folder: shapes, layout, label prevalence."""
    import numpy as np

    from danq.data.targets import read_metadata
    from danq.io.deepsea import open_split

    data = args.data or params.data_dir
    summary: dict[str, dict] = {}
    for split in SPLITS:
        with open_split(storage.join(data, f"{split}.mat"), split) as reader:
            positives = np.zeros(reader.n_targets, dtype=np.int64)
            gc = n_bases = 0
            for _, x, y in reader.iter_chunks(params.prepare.chunk_size):
                positives += y.sum(axis=0, dtype=np.int64)
                gc += int(x[:, :, 1:3].sum(dtype=np.int64))
                n_bases += int(x.sum(dtype=np.int64))
            summary[split] = {
                "file": reader.name,
                "container": "MATLAB v7.3 (HDF5)" if reader.container == "hdf5" else "MATLAB v5",
                "layout": reader.layout,
                "samples": reader.n,
                "seq_len": reader.seq_len,
                "targets": reader.n_targets,
                "gc_content": round(gc / max(n_bases, 1), 4),
                "mean_prevalence": round(float(positives.mean()) / reader.n, 4),
                "targets_without_positives": int((positives == 0).sum()),
            }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{'split':6} {'file':10} {'container':19} {'samples':>9} {'bp':>5} {'targets':>7} "
        f"{'GC':>6} {'prev.':>6} {'no pos.':>7}"
    )
    for split, s in summary.items():
        print(
            f"{split:6} {s['file']:10} {s['container']:19} {s['samples']:>9} "
            f"{s['seq_len']:>5} {s['targets']:>7} {s['gc_content']:>6.3f} "
            f"{s['mean_prevalence']:>6.3f} {s['targets_without_positives']:>7}"
        )
    metadata = read_metadata(data)
    if metadata:
        counts = {c: len(t) for c, t in metadata["categories"].items()}
        print("synthetic targets by rule: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0


def cmd_fetch(args: argparse.Namespace, params: Params) -> int:
    from danq.io import fetch

    return fetch.run(args)


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate, fetch, inspect and prepare data")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    synth = data_commands.add_parser(
        "synth",
        help="write the synthetic DeepSEA-format benchmark (train/valid/test.mat)",
        description="Plant JASPAR motifs into random DNA following a regulatory grammar and "
        "write train.mat, valid.mat, test.mat and metadata.json in the DeepSEA layout.",
    )
    synth.add_argument("--out", help="output folder (default: paths.data_dir)")
    synth.set_defaults(handler=cmd_synth)

    prepare = data_commands.add_parser(
        "prepare",
        help="convert .mat splits to TFRecord shards (bounded memory)",
        description="Stream each split in chunks into fixed-length TFRecord shards "
        "(1 byte per base, packed labels) with a manifest.json; local or gs:// paths.",
    )
    prepare.add_argument("--data", help="DeepSEA-format folder (default: paths.data_dir)")
    prepare.add_argument("--out", help="shard folder (default: <paths.work_dir>/shards)")
    prepare.add_argument(
        "--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to convert"
    )
    prepare.add_argument("--quiet", action="store_true", help="no progress lines")
    prepare.set_defaults(handler=cmd_prepare)

    info = data_commands.add_parser(
        "info", help="summarise a DeepSEA-format folder (shapes, GC, label prevalence)"
    )
    info.add_argument("--data", help="DeepSEA-format folder (default: paths.data_dir)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=cmd_info)

    fetch = data_commands.add_parser(
        "fetch-deepsea",
        help="download and unpack the DeepSEA training bundle (resumable)",
        description="Download deepsea_train_bundle.v0.9.tar.gz with resume and checksum "
        "checks, unpack train/valid/test.mat, and print the DVC commands to version them.",
    )
    from danq.io import fetch as fetch_module

    fetch_module.add_arguments(fetch)
    fetch.set_defaults(handler=cmd_fetch)
