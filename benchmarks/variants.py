"""Variant-effect scoring: `danq variant-effect`'s batched path against a plain per-variant
`model.predict` loop over the same windows, and its peak memory from 10k to 1M variants.

Throughput. A random 1-Mb genome and N random SNVs (text VCF); ours is the library call
behind `danq variant-effect` (danq.prediction.effects.score_variants: VCF reading, REF check,
windows, batched scoring of both strands, TSV writing), timed whole. The reference is what a
user writes without it: for each variant, its reference and alternative windows (the same
windows, built by danq.prediction.variants.allele_window) and their reverse complements in one
`model.predict` call. It runs on fewer variants (a rate per variant does not depend on the
count) and its diffs are checked against ours.

Memory. `danq variant-effect` as a child process (benchmarks.memory.run_measured: its own
peak RSS) on VCFs of each size with a tiny model (the scoring cost, not the model, is what
grows with the VCF). Both write the scores of 10 of the 919 targets (a TSV of all 919 x 5
scores is 20 kB per variant, and writing it would be most of what is timed).
"""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import numpy as np

from benchmarks.memory import MB, danq_command, rss_growth_figure, run_measured
from benchmarks.records import Figure, Summary
from danq.config import DropoutConfig, ModelConfig, VariantEffectConfig
from danq.data.encoding import codes_to_onehot, decode, encode, reverse_complement_onehot

CONTIG = "chrB"
GENOME_BP = 1_000_000
MEMORY_GENOME_BP = 5_000_000
MEMORY_SEQ_LEN = 200
TARGETS_WRITTEN = 10
VCF_CHUNK = 100_000
TINY_MODEL = ModelConfig(
    preset="custom", conv_filters=8, conv_width=10, pool_size=10, lstm_units=8, dense_units=16
)


def write_genome(path: Path, length: int, seed: int) -> Path:
    """One contig of uniform random bases (+ .fai); reused when it exists."""
    import pysam

    if not path.exists():
        codes = np.random.default_rng(seed).integers(0, 4, length, dtype=np.uint8)
        text = decode(codes)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(f">{CONTIG}\n")
            fh.writelines(text[i : i + 60] + "\n" for i in range(0, length, 60))
        pysam.faidx(str(path))
    return path


def write_snvs(path: Path, genome: Path, n: int, seed: int) -> Path:
    """n SNVs at distinct random positions of the genome, sorted, REF from the genome and a
    random other base as ALT; reused when it exists."""
    import pysam

    if path.exists():
        return path
    with pysam.FastaFile(str(genome)) as fasta:
        length = fasta.get_reference_length(CONTIG)
        bases = encode(fasta.fetch(CONTIG))
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(length, size=n, replace=False))
    refs = bases[positions]
    alts = (refs + rng.integers(1, 4, size=n, dtype=np.uint8)) % 4
    with open(path, "w") as fh:
        fh.write(f"##fileformat=VCFv4.2\n##contig=<ID={CONTIG},length={length}>\n")
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for lo in range(0, n, VCF_CHUNK):
            hi = min(lo + VCF_CHUNK, n)
            ref_text, alt_text = decode(refs[lo:hi]), decode(alts[lo:hi])
            fh.writelines(
                f"{CONTIG}\t{p + 1}\tv{lo + i + 1}\t{ref_text[i]}\t{alt_text[i]}\t.\t.\t.\n"
                for i, p in enumerate(positions[lo:hi].tolist())
            )
    return path


def build_model(cfg: ModelConfig, seq_len: int, n_targets: int):
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq

    return build_danq(cfg, seq_len, n_targets, dropout_policy(DropoutConfig(), "baseline"), seed=0)


def read_snvs(vcf: Path, n: int) -> list[tuple[int, str, str]]:
    """(0-based position, REF, ALT) of the first n records."""
    import pysam

    with pysam.VariantFile(str(vcf)) as records:
        return [(r.start, r.ref, r.alts[0]) for r in itertools.islice(records, n)]


def per_variant_loop(model, genome: Path, snvs: list[tuple[int, str, str]]) -> np.ndarray:
    """The reference: one model.predict per variant on its ref and alt windows and their
    reverse complements; returns alt - ref (strand means), (n, targets)."""
    from danq.predict import model_seq_len
    from danq.prediction.genome import open_genome
    from danq.prediction.variants import allele_window

    seq_len = model_seq_len(model)
    diffs = []
    with open_genome(genome) as opened:

        def fetch(start: int, end: int) -> str:
            return opened.fetch(CONTIG, start, end)

        for p, ref, alt in snvs:
            windows = [allele_window(fetch, p, 1, allele, seq_len) for allele in (ref, alt)]
            x = codes_to_onehot(np.stack([encode(w) for w in windows])).astype(np.float32)
            out = model.predict(np.concatenate([x, reverse_complement_onehot(x)]), verbose=0)
            diffs.append((out[1] + out[3]) / 2 - (out[0] + out[2]) / 2)
    return np.array(diffs)


def ours(model, genome: Path, vcf: Path, out: Path, names: list[str]) -> float:
    """Seconds of one score_variants run over the whole VCF, the first TARGETS_WRITTEN
    targets written."""
    from danq.prediction.effects import score_variants
    from danq.prediction.genome import open_genome

    started = time.perf_counter()
    with open_genome(genome) as opened:
        score_variants(
            model,
            vcf,
            opened,
            names,
            out,
            chosen=names[:TARGETS_WRITTEN],
            batch_size=VariantEffectConfig().batch_size,
            progress=None,
        )
    return time.perf_counter() - started


def throughput_figure(
    work: Path, preset: str, seq_len: int, n_targets: int, n_ours: int, n_loop: int, repeats: int
) -> Figure:
    genome = write_genome(work / "vep-genome.fa", GENOME_BP, seed=1)
    vcf = write_snvs(work / f"vep-snvs-{n_ours}.vcf", genome, n_ours, seed=n_ours)
    model = build_model(ModelConfig(preset=preset), seq_len, n_targets)
    names = [f"t{i}" for i in range(n_targets)]
    out = work / f"vep-{preset}.tsv"
    ours(model, genome, read_head(vcf, work, min(n_ours, 64)), out, names)  # warm-up: tracing
    ours_rates, loop_rates = [], []
    snvs = read_snvs(vcf, n_loop)
    loop_diffs = per_variant_loop(model, genome, snvs[:2])  # warm-up
    for _ in range(repeats):
        ours_rates.append(n_ours / ours(model, genome, vcf, out, names))
        started = time.perf_counter()
        loop_diffs = per_variant_loop(model, genome, snvs)
        loop_rates.append(len(snvs) / (time.perf_counter() - started))
    with open(out) as fh:
        rows = list(itertools.islice(csv.DictReader(fh, delimiter="\t"), len(snvs)))
    written = names[:TARGETS_WRITTEN]
    our_diffs = np.array([[float(row[f"{name}:diff"]) for name in written] for row in rows])
    difference = float(np.abs(our_diffs - loop_diffs[:, : len(written)]).max())
    return Figure(
        f"variant effects, `{preset}` preset, {seq_len} bp, {n_targets} targets",
        "variants/s",
        Summary.of(ours_rates),
        f"score_variants (`danq variant-effect`) on {n_ours:,} SNVs, batch "
        f"{VariantEffectConfig().batch_size} windows, VCF in and TSV out ({TARGETS_WRITTEN} "
        "targets written) included",
        Summary.of(loop_rates),
        f"a model.predict call per variant (ref, alt and their reverse complements) on "
        f"{len(snvs):,} of the same SNVs (VCF reading not timed)",
        notes=f"largest |diff| difference between the two on those SNVs: {difference:.2g}",
        details={"max_abs_difference": difference, "n_ours": n_ours, "n_loop": len(snvs)},
    )


def read_head(vcf: Path, work: Path, n: int) -> Path:
    """The VCF's header and first n records, as a file (a short warm-up run)."""
    head = work / f"{vcf.stem}-head{n}.vcf"
    with open(vcf) as src, open(head, "w") as dst:
        records = 0
        for line in src:
            if not line.startswith("#"):
                records += 1
                if records > n:
                    break
            dst.write(line)
    return head


def memory_figures(work: Path, sizes: list[int], n_targets: int) -> list[Figure]:
    model_path = work / "vep-tiny.keras"
    if not model_path.exists():
        build_model(TINY_MODEL, MEMORY_SEQ_LEN, n_targets).save(model_path)
    genome = write_genome(work / "vep-memory-genome.fa", MEMORY_GENOME_BP, seed=2)
    params = work / "vep-params.yaml"
    params.write_text("{}\n")
    n_written = min(TARGETS_WRITTEN, n_targets)
    written = ",".join(f"target_{i}" for i in range(n_written))
    runs = {}
    for n in sizes:
        vcf = write_snvs(work / f"vep-memory-{n}.vcf", genome, n, seed=n)
        cmd = [danq_command(), "--params", str(params), "-S", f"paths.data_dir={work / 'none'}"]
        cmd += ["variant-effect", "--vcf", str(vcf), "--fasta", str(genome)]
        cmd += ["--model", str(model_path), "--targets", written, "--out", str(work / "m.tsv")]
        runs[n] = run_measured(cmd)
    (work / "m.tsv").unlink()  # 0.5 GB at 1M variants
    figures = [
        Figure(
            f"`danq variant-effect` peak RSS, {n:,} SNVs",
            "MB",
            Summary.of([run.peak_rss_bytes / MB]),
            f"child process, tiny model ({MEMORY_SEQ_LEN} bp, {n_targets} targets, "
            f"{n_written} written)",
            notes=f"{n / run.wall_s:,.0f} variants/s, process start-up included",
            details={"wall_s": run.wall_s},
        )
        for n, run in runs.items()
    ]
    growth = rss_growth_figure("`danq variant-effect`", runs, "SNVs")
    return figures if growth is None else [*figures, growth]


def variants_benchmark(
    work: Path,
    presets: list[str],
    counts: list[int],
    loop_counts: list[int],
    memory_sizes: list[int],
    seq_len: int,
    n_targets: int,
    repeats: int,
) -> list[Figure]:
    work.mkdir(parents=True, exist_ok=True)
    figures = [
        throughput_figure(work, preset, seq_len, n_targets, n, loop, repeats)
        for preset, n, loop in zip(presets, counts, loop_counts, strict=True)
    ]
    return figures + memory_figures(work, memory_sizes, n_targets)
