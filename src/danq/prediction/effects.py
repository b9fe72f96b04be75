"""Variant effects: every ALT of a VCF scored with a model on its reference and alternative
windows (danq.prediction.variants), written as TSV and optionally as an annotated VCF.

Scores, per chosen target, from probabilities that are each the mean of the window and its
reverse complement (danq.predict.score_with_reverse_complement, the project's one prediction
path): `ref` and `alt` (probabilities), `diff` = alt - ref, `abs_diff` = |alt - ref|,
`log_odds_diff` = logit(alt) - logit(ref) with both clipped to [1e-6, 1 - 1e-6]. Numbers are
written with 6 significant digits (%.6g).

Streaming: records are read and written in chunks of batch_size // 2 records; the windows a
chunk needs are deduplicated (the alleles of a multi-allelic site share one reference window)
and scored batch_size windows per model call (2 x batch_size rows with the reverse
complements). Memory does not grow with the file: one chunk, plus a cache of the scores of the
last `cache_alleles` distinct alleles, so that duplicated records get their scores from the
same model call and identical rows whatever batch they fall in.

Outputs are written under temporary names and renamed into place when everything succeeded:
an error leaves no output. The TSV has one row per ALT, skipped ones included: chrom, pos, id,
ref, alt as in the VCF; flags (comma-separated, '.' for none); skipped (the reason, '.' when
scored); then `<target>:<score>` for each chosen target and score (NA when skipped). The VCF
copies every record (declaring in its header the contigs, INFO, FORMAT and FILTER values the
input uses undeclared, found by a first pass over it) and adds Number=A INFO fields:
DANQ_<SCORE>_<target> (target names with characters other than letters, digits, '_' and '.'
replaced by '_'; the header line's Description names the real target), DANQ_FLAGS
('|'-separated) and DANQ_SKIP. A name ending in .gz is bgzip-compressed and tabix-indexed
(.tbi), which needs records sorted by position.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from danq.artifacts import atomic_text, temporary_name
from danq.data.encoding import codes_to_onehot, encode
from danq.errors import DataError, PredictError
from danq.predict import model_seq_len, score_with_reverse_complement
from danq.prediction.genome import Genome
from danq.prediction.variants import (
    Allele,
    allele_windows,
    checked_vcf_text,
    numbered_records,
    prepare_alleles,
)

if TYPE_CHECKING:
    import keras
    import pysam

SCORES = ("ref", "alt", "diff", "abs_diff", "log_odds_diff")
_VCF_SCORE_TAGS = ("REF", "ALT", "DIFF", "ABSDIFF", "LOGODDS")
LOG_ODDS_EPSILON = 1e-6
VCF_FLAGS_TAG = "DANQ_FLAGS"
VCF_SKIP_TAG = "DANQ_SKIP"
MISSING = "NA"
_INFO_ID_CHARS = re.compile(r"[^0-9A-Za-z_.]")


@dataclass
class EffectSummary:
    """What a run scored and skipped; renames: VCF contig names read as other FASTA names."""

    records: int = 0
    alleles: int = 0
    scored: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    renames: dict[str, str] = field(default_factory=dict)


def effect_scores(ref_prob: np.ndarray, alt_prob: np.ndarray) -> np.ndarray:
    """(..., T) reference and alternative probabilities to (..., T, 5) scores in SCORES order."""
    ref, alt = ref_prob.astype(np.float64), alt_prob.astype(np.float64)

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, LOG_ODDS_EPSILON, 1 - LOG_ODDS_EPSILON)
        return np.log(p) - np.log1p(-p)

    diff = alt - ref
    return np.stack([ref, alt, diff, np.abs(diff), logit(alt) - logit(ref)], axis=-1)


def target_indices(names: Sequence[str], chosen: Sequence[str] | None) -> list[int]:
    """Positions of the chosen targets among the model's names (all when None); an unknown
    name is refused with the closest known ones."""
    if chosen is None:
        return list(range(len(names)))
    if not chosen:
        raise PredictError("no targets chosen")
    where = {name: i for i, name in enumerate(names)}
    for name in chosen:
        if name not in where:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise PredictError(
                f"target {name!r} is not one of the model's {len(names)} targets{hint}"
            )
    return [where[name] for name in dict.fromkeys(chosen)]


class _AlleleScorer:
    """Scores of alleles, with the windows of a call deduplicated and a bounded cache of the
    last `capacity` distinct alleles."""

    def __init__(
        self,
        model: keras.Model,
        genome: Genome,
        targets: list[int],
        batch_size: int,
        capacity: int,
    ) -> None:
        self.model, self.genome, self.targets = model, genome, targets
        self.seq_len = model_seq_len(model)
        self.batch_size, self.capacity = batch_size, capacity
        self.cache: OrderedDict[tuple[str, int, str, str], np.ndarray] = OrderedDict()

    def _probabilities(self, windows: list[str]) -> np.ndarray:
        parts = []
        for start in range(0, len(windows), self.batch_size):
            codes = np.stack([encode(w) for w in windows[start : start + self.batch_size]])
            scores = score_with_reverse_complement(self.model, codes_to_onehot(codes))
            parts.append(scores[:, self.targets])
        return np.concatenate(parts)

    def scores(self, alleles: list[Allele]) -> dict[tuple[str, int, str, str], np.ndarray]:
        missing = {a.key: a for a in alleles if a.key not in self.cache}
        window_index: dict[str, int] = {}
        pairs = []
        for allele in missing.values():
            ref, alt = allele_windows(self.genome, allele, self.seq_len)
            i = window_index.setdefault(ref, len(window_index))
            pairs.append((i, window_index.setdefault(alt, len(window_index))))
        if window_index:
            probs = self._probabilities(list(window_index))
            for key, (i, j) in zip(missing, pairs):
                self.cache[key] = effect_scores(probs[i], probs[j])
        found = {}
        for allele in alleles:
            self.cache.move_to_end(allele.key)
            found[allele.key] = self.cache[allele.key]
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return found


# --------------------------------------------------------------------------- outputs


def tsv_header(target_names: Sequence[str]) -> str:
    scores = [f"{name}:{score}" for name in target_names for score in SCORES]
    return "\t".join(["chrom", "pos", "id", "ref", "alt", "flags", "skipped", *scores]) + "\n"


def tsv_row(allele: Allele, scores: np.ndarray | None, n_values: int) -> str:
    values = [MISSING] * n_values if scores is None else [f"{v:.6g}" for v in scores.ravel()]
    fields = [allele.chrom, str(allele.pos), allele.id, allele.ref, allele.alt]
    fields += [",".join(allele.flags) or ".", allele.skip or "."]
    return "\t".join(fields + values) + "\n"


def info_ids(target_names: Sequence[str]) -> list[str]:
    """A VCF-safe INFO id suffix per target, unique."""
    safe = [_INFO_ID_CHARS.sub("_", name) for name in target_names]
    counts = Counter(safe)
    return [s if counts[s] == 1 else f"{s}_{i}" for i, s in enumerate(safe)]


def _add_info_fields(header: pysam.VariantHeader, label: str, target_names: list[str]) -> None:
    ids = info_ids(target_names)
    fields = [
        (f"DANQ_{tag}_{safe}", "Float", f"DanQ {score} of target '{name}'")
        for safe, name in zip(ids, target_names)
        for tag, score in zip(_VCF_SCORE_TAGS, SCORES)
    ]
    fields += [
        (
            VCF_FLAGS_TAG,
            "String",
            "DanQ flags of the allele, '|'-separated (edge, ref_mismatch, swapped, fixed)",
        ),
        (VCF_SKIP_TAG, "String", "why DanQ did not score the allele"),
    ]
    taken = [tag for tag, _, _ in fields if tag in header.info]
    if taken:
        raise DataError(f"{label}: already has INFO {taken[0]}: annotated by danq before?")
    # pysam writes END=POS for a symbolic allele and needs END declared to do so.
    if "END" not in header.info:
        header.info.add("END", 1, "Integer", "End position of the variant")
    for tag, kind, description in fields:
        header.info.add(tag, "A", kind, description.replace('"', "'"))


def _annotate(
    record: pysam.VariantRecord,
    alleles: list[Allele],
    scores: dict[tuple[str, int, str, str], np.ndarray],
    target_names: list[str],
) -> None:
    if record.alts is None:
        return  # no ALT: Number=A fields have no value to hold
    values = [scores.get(a.key) if a.skip is None else None for a in alleles]
    for t, safe in enumerate(info_ids(target_names)):
        for s, tag in enumerate(_VCF_SCORE_TAGS):
            record.info[f"DANQ_{tag}_{safe}"] = tuple(
                None if v is None else float(f"{v[t, s]:.6g}") for v in values
            )
    record.info[VCF_FLAGS_TAG] = tuple("|".join(a.flags) or "." for a in alleles)
    record.info[VCF_SKIP_TAG] = tuple(a.skip or "." for a in alleles)


@contextmanager
def _vcf_output(
    path: str | os.PathLike[str] | None, header: pysam.VariantHeader
) -> Iterator[pysam.VariantFile | None]:
    """A VCF writer under a temporary name, put in place (bgzipped and indexed for .gz) only
    when the block succeeds."""
    import pysam

    if path is None:
        yield None
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    compressed = final.name.endswith(".gz")
    tmp = temporary_name(final)
    index = Path(f"{tmp}.tbi")
    writer = pysam.VariantFile(str(tmp), "wz" if compressed else "w", header=header)
    try:
        yield writer
        writer.close()
        if compressed:
            try:
                pysam.tabix_index(str(tmp), preset="vcf", force=True)
            except (OSError, pysam.utils.SamtoolsError) as err:
                raise DataError(
                    f"{final}: cannot tabix-index the output ({err}); records must be sorted by "
                    "contig and position (sort the VCF, or write an uncompressed .vcf)"
                ) from None
            os.replace(index, f"{final}.tbi")
        os.replace(tmp, final)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
        index.unlink(missing_ok=True)


def _checked_vcf(label: str) -> int:
    """Read the VCF through once within the reader limits before htslib, which reads a line
    whole and inflates uncapped, ever opens it; returns the line of its first record."""
    if not Path(label).is_file():
        raise DataError(f"{label}: VCF not found")
    return checked_vcf_text(label)


@contextmanager
def _open_vcf(label: str) -> Iterator[pysam.VariantFile]:
    """The VCF through htslib; _checked_vcf first."""
    import pysam

    # Quiet while opening: htslib reports a missing .tbi of a .vcf.gz, which is not needed.
    verbosity = pysam.set_verbosity(0)
    try:
        vcf = pysam.VariantFile(label)
    except (OSError, ValueError) as err:
        raise DataError(f"{label}: cannot read as VCF: {err}") from None
    except NotImplementedError:  # htslib cannot seek in plain gzip, only in BGZF blocks
        raise DataError(
            f"{label}: compressed with plain gzip; VCF must be plain text or bgzip-compressed "
            f"(bgzip, from htslib: `gzip -dc {label} | bgzip > {label}.bgz`)"
        ) from None
    finally:
        pysam.set_verbosity(verbosity)
    try:
        if vcf.format != "VCF":
            raise DataError(f"{label}: {vcf.format}, expected VCF text (plain or bgzip)")
        yield vcf
    finally:
        vcf.close()


def _declare_undeclared(vcf_path: str, first_record_line: int, header: pysam.VariantHeader) -> None:
    """Add to header the contig, INFO, FORMAT and FILTER lines the VCF uses without declaring
    them. htslib reads such records (declaring them in the reader's header as it meets them),
    but a writer needs every one declared before the first record: a first pass finds them."""
    with _open_vcf(vcf_path) as first:
        for _ in numbered_records(first, vcf_path, first_record_line):
            pass
        declared = {str(line) for line in header.records}
        for line in first.header.records:
            if str(line) not in declared:
                header.add_line(str(line).rstrip("\n"))


def score_variants(
    model: keras.Model,
    vcf_path: str | os.PathLike[str],
    genome: Genome,
    target_names: list[str],
    out_tsv: str | os.PathLike[str],
    out_vcf: str | os.PathLike[str] | None = None,
    chosen: Sequence[str] | None = None,
    batch_size: int = 512,
    max_allele_length: int = 50,
    cache_alleles: int = 10_000,
    fix_swapped: bool = False,
    progress: IO[str] | None = sys.stderr,
) -> EffectSummary:
    """Score every ALT of the VCF (see the module doc); progress: where the progress bar goes
    (None: no bar; it shows on terminals only)."""
    from tqdm import tqdm

    if batch_size < 2:
        raise PredictError(f"batch size {batch_size}: at least 2 windows (reference + alternative)")
    targets = target_indices(target_names, chosen)
    names = [target_names[i] for i in targets]
    seq_len = model_seq_len(model)
    scorer = _AlleleScorer(model, genome, targets, batch_size, cache_alleles)
    summary = EffectSummary()
    label = str(vcf_path)
    n_values = len(names) * len(SCORES)
    first_record_line = _checked_vcf(label)
    with (
        _open_vcf(label) as vcf,
        atomic_text(out_tsv) as tsv,
        tqdm(unit=" records", file=progress, disable=None if progress else True) as bar,
    ):
        if out_vcf is not None:
            _declare_undeclared(label, first_record_line, vcf.header)
            _add_info_fields(vcf.header, label, names)
        records = numbered_records(vcf, label, first_record_line)
        tsv.write(tsv_header(names))
        with _vcf_output(out_vcf, vcf.header) as writer:
            while chunk := list(itertools.islice(records, max(1, batch_size // 2))):
                groups = [
                    (
                        record,
                        prepare_alleles(
                            record, line, label, genome, seq_len, max_allele_length, fix_swapped
                        ),
                    )
                    for line, record in chunk
                ]
                scored = [a for _, alleles in groups for a in alleles if a.skip is None]
                scores = scorer.scores(scored)
                for record, alleles in groups:
                    for allele in alleles:
                        allele_scores = None if allele.skip else scores[allele.key]
                        tsv.write(tsv_row(allele, allele_scores, n_values))
                        summary.flags.update(allele.flags)
                        if allele.skip:
                            summary.skipped[allele.skip] += 1
                    if writer is not None:
                        _annotate(record, alleles, scores, names)
                        writer.write(record)
                    summary.alleles += len(alleles)
                summary.records += len(chunk)
                summary.scored += len(scored)
                bar.update(len(chunk))
    summary.renames = dict(genome.renames)
    return summary
