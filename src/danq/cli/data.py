"""`danq data synth | synth-genome | from-bed | oracle | prepare | info | fetch-deepsea`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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


def cmd_synth_genome(args: argparse.Namespace, params: Params) -> int:
    from danq.data.synth_genome import write_genome

    started = time.monotonic()
    metadata = write_genome(args.out, params.synth_genome, params.synth)
    contigs = ", ".join(f"{name} {length:,} bp" for name, length in metadata["contigs"].items())
    variants = ", ".join(f"{n} {category}" for category, n in metadata["variants"].items())
    print(
        f"wrote a synthetic genome to {args.out}/ in {time.monotonic() - started:.1f} s: "
        f"{contigs}; {metadata['instances']} planted motif instances; SNVs: {variants}"
    )
    return 0


def cmd_from_bed(args: argparse.Namespace, params: Params) -> int:
    """Build a DeepSEA-layout data set from a genome FASTA and a sheet of peak files."""
    from danq.data.from_bed import build_dataset

    cfg = params.from_bed
    if args.blacklist or args.build:
        cfg = cfg.model_copy(
            update={"blacklist": args.blacklist or cfg.blacklist, "build": args.build or cfg.build}
        )
    out = args.out or params.data_dir
    started = time.monotonic()
    metadata = build_dataset(args.fasta, args.peaks, out, cfg, params.seed, not args.quiet)
    counts = metadata["counts"]
    print(
        f"wrote {len(metadata['targets'])} targets x {cfg.window}-bp windows to {out}/ in "
        f"{time.monotonic() - started:.1f} s: "
        + ", ".join(
            f"{split} {counts[split]['positive_bins']} positive + "
            f"{counts[split]['negative_bins']} negative bins"
            for split in SPLITS
        )
        + " (x2 with reverse complements)"
    )
    return 0


def cmd_oracle(args: argparse.Namespace, params: Params) -> int:
    """Score the synthetic test split with the PWM-scan oracle that knows the planted grammar."""
    from danq.artifacts import ORACLE_DIR
    from danq.data.oracle import write_oracle

    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, ORACLE_DIR)
    started = time.monotonic()
    metrics = write_oracle(data, out, params.prepare.chunk_size)
    overall, presence = metrics["overall"], metrics["presence_only"]["overall"]
    print(
        f"oracle (PWM scan + planted grammar): test macro AUROC {overall['auroc']:.4f}, "
        f"macro AUPR {overall['aupr']:.4f} over {overall['n_scoreable']} targets, "
        f"{metrics['n_test']} sequences; motif presence alone: AUROC "
        f"{presence['auroc']:.4f}, AUPR {presence['aupr']:.4f} "
        f"({time.monotonic() - started:.1f} s) -> {out}"
    )
    return 0


def cmd_prepare(args: argparse.Namespace, params: Params) -> int:
    from danq.data.shards import prepare_dataset

    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, "shards")
    expected = None
    if args.validation:
        from danq.validation.report import read_report_fingerprint

        expected = read_report_fingerprint(args.validation)
    started = time.monotonic()
    manifests = prepare_dataset(
        data, out, params.prepare, tuple(args.splits), not args.quiet, expected_fingerprint=expected
    )
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
    from danq.data.targets import read_metadata
    from danq.io.deepsea import summarise_folder

    data = args.data or params.data_dir
    summary = summarise_folder(data, params.prepare.chunk_size)
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
    """Download, verify and unpack the bundle; print where it went and how to version it."""
    from danq.io.fetch import DEEPSEA_BUNDLE_URL, dvc_commands, fetch_deepsea

    bundle = fetch_deepsea(
        args.url or DEEPSEA_BUNDLE_URL,
        args.dest,
        sha256=args.sha256,
        md5=args.md5,
        expected_size=args.expected_size,
        keep_archive=args.keep_archive,
        progress=args.progress,
        timeout=args.timeout,
        retries=args.retries,
        pins=args.pins,
        trust_first_download=args.trust_first_download,
    )
    files = ", ".join(path.name for path in bundle.files)
    print(f"Unpacked {files} into {bundle.dest} (archive sha256 {bundle.archive_sha256})")
    if bundle.pinned_now:
        print(f"Pinned its sha256 and size in {args.pins}: commit it, later downloads must match")
    if bundle.archive_kept:
        print(
            f"Kept {bundle.archive}: it lies inside {bundle.dest}, so move it out before `dvc add`."
        )
    print("Version the data with DVC:")
    for command in dvc_commands(bundle.dest):
        print(f"  {command}")
    return 0


def _add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults that live in library modules are filled in by the handler: building the parser
    # must not import them (every command builds it, and dvc.yaml lists what a stage loads).
    parser.add_argument("--url", help="bundle URL (default: the DeepSEA bundle's)")
    parser.add_argument(
        "--dest", type=Path, default=Path("data"), help="folder for the .mat files (default: data)"
    )
    parser.add_argument("--sha256", help="expected SHA-256 of the archive")
    parser.add_argument(
        "--pins",
        type=Path,
        default=Path("fetch-pins.json"),
        help="URL -> sha256 and size of archives downloaded before (default: fetch-pins.json, "
        "committed); a pinned URL must match, a new one is pinned after it unpacked",
    )
    parser.add_argument(
        "--trust-first-download",
        action="store_true",
        help="accept a plain-http download without a checksum once, and pin it",
    )
    parser.add_argument("--md5", help="expected MD5 of the archive")
    parser.add_argument("--expected-size", type=int, help="expected archive size in bytes")
    parser.add_argument(
        "--keep-archive", action="store_true", help="keep the .tar.gz after unpacking"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide the progress bar"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a connection or a read"
    )
    parser.add_argument(
        "--retries", type=int, default=5, help="attempts in a row without progress before giving up"
    )


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

    genome = data_commands.add_parser(
        "synth-genome",
        help="write a small synthetic genome (FASTA, planted motifs as BED, example SNVs as VCF)",
        description="Tile contigs with sequences of the synthetic grammar (settings synth and "
        "synth_genome) and write genome.fa (+ .fai), motifs.bed (every planted motif instance, "
        "its core base as thickStart), variants.vcf.gz (+ .tbi: motif-core and background "
        "SNVs) and genome.json.",
    )
    genome.add_argument("--out", required=True, help="output folder (replaced atomically)")
    genome.set_defaults(handler=cmd_synth_genome)

    from_bed = data_commands.add_parser(
        "from-bed",
        help="build a DeepSEA-layout data set from a genome FASTA and peak files",
        description="Cut the genome into from_bed.bin_size bins, label each bin by the peaks "
        "of every target in the sheet, keep the positive bins plus sampled negatives, hold out "
        "whole chromosomes and write train/valid/test.mat, <split>_bins.bed and metadata.json "
        "in the layout `danq validate` and `danq data prepare` read (settings: from_bed).",
    )
    from_bed.add_argument(
        "--fasta", required=True, help="genome FASTA, plain or bgzip (indexed beside it)"
    )
    from_bed.add_argument(
        "--peaks",
        required=True,
        help="sheet: one target per line, name<TAB>BED/narrowPeak file[<TAB>category], "
        "paths relative to the sheet",
    )
    from_bed.add_argument("--out", help="output folder (default: paths.data_dir)")
    from_bed.add_argument(
        "--blacklist", help="BED of excluded regions (default: from_bed.blacklist)"
    )
    from_bed.add_argument("--build", help="genome build to record (default: from_bed.build)")
    from_bed.add_argument("--quiet", action="store_true", help="no progress bars")
    from_bed.set_defaults(handler=cmd_from_bed)

    oracle = data_commands.add_parser(
        "oracle",
        help="score the synthetic test split with a PWM-scan oracle that knows the grammar",
        description="A training-free ceiling for the synthetic benchmark: scan the test "
        "sequences for the planted JASPAR motifs (both strands), apply each target's rule "
        "and score it like an evaluation (metrics.json, per_target.tsv). Refuses data not "
        "written by `danq data synth`.",
    )
    oracle.add_argument("--data", help="synthetic data folder (default: paths.data_dir)")
    oracle.add_argument("--out", help="output folder (default: <paths.work_dir>/oracle)")
    oracle.set_defaults(handler=cmd_oracle)

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
    prepare.add_argument(
        "--validation",
        metavar="DIR",
        help="the data gate's output folder: convert only the exact files that passed it "
        "(its report.json fingerprint); refuse data changed since",
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
    _add_fetch_arguments(fetch)
    fetch.set_defaults(handler=cmd_fetch)
