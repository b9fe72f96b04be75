"""`danq variant-effect`: windows against brute-force slices, scores against the model,
every defect class of a VCF, determinism, outputs and the command line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pysam
import pytest

from danq.cli.main import main
from danq.data.encoding import codes_to_onehot, encode, reverse_complement_onehot
from danq.errors import DataError, PredictError
from danq.prediction.effects import (
    LOG_ODDS_EPSILON,
    EffectSummary,
    score_variants,
    target_indices,
)
from danq.prediction.genome import open_genome
from danq.prediction.variants import FLAGS, SKIP_REASONS, Allele, allele_windows

from .test_genome import random_genome, write_fasta

L = 60  # the input length of the model_file fixture
NAMES = ["t0", "t1", "t2"]
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
OTHER = {"A": "C", "C": "G", "G": "T", "T": "A"}  # a base that differs


def revcomp(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


@pytest.fixture(scope="module")
def contigs() -> dict[str, str]:
    return random_genome({"chr1": 400, "chr2": 150, "chrM": 90}, seed=5)


@pytest.fixture
def fasta(tmp_path: Path, contigs: dict[str, str]) -> Path:
    return write_fasta(tmp_path / "genome.fa", contigs)


def write_vcf(path: Path, rows: list[str], contigs: tuple[str, ...] = ("chr1",)) -> Path:
    """A VCF of tab-separated CHROM POS ID REF ALT rows (QUAL, FILTER, INFO '.')."""
    header = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c}>" for c in contigs)]
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    body = ["\t".join([*row.split(), ".", ".", "."]) for row in rows]
    path.write_text("\n".join(header + body) + "\n")
    return path


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *lines = [line.split("\t") for line in path.read_text().splitlines()]
    return [dict(zip(header, fields)) for fields in lines]


def score(
    model, vcf: Path, fasta: Path, out: Path, **options
) -> tuple[list[dict[str, str]], EffectSummary]:
    with open_genome(fasta) as genome:
        summary = score_variants(model, vcf, genome, NAMES, out, progress=None, **options)
    return read_tsv(out), summary


def strand_mean(model, windows: list[str]) -> np.ndarray:
    """The model on each window and on its brute-force reverse complement, averaged."""
    forward = codes_to_onehot(np.stack([encode(w) for w in windows])).astype(np.float32)
    reverse = codes_to_onehot(np.stack([encode(revcomp(w)) for w in windows])).astype(np.float32)
    return (model(forward, training=False).numpy() + model(reverse, training=False).numpy()) / 2


def brute_windows(seq: str, p: int, ref: str, alt: str, seq_len: int) -> tuple[str, str]:
    """The documented windows by string slicing: first REF base at index seq_len // 2, ALT in
    its place, the right end cut or extended to seq_len, N outside the contig."""
    pad = "N" * 2 * seq_len
    padded, o = pad + seq.upper() + pad, len(pad)
    left = padded[o + p - seq_len // 2 : o + p]
    return (
        (left + ref + padded[o + p + len(ref) :])[:seq_len],
        (left + alt + padded[o + p + len(ref) :])[:seq_len],
    )


def random_allele(rng: np.random.Generator, seq: str, max_len: int) -> tuple[int, str, str]:
    """A random SNV, MNV, deletion or insertion at a random position (0-based p, REF, ALT)."""
    kind = rng.choice(["snv", "mnv", "deletion", "insertion"])
    size = int(rng.integers(2, max_len + 1))
    ref_len = {"snv": 1, "mnv": size, "deletion": size, "insertion": 1}[str(kind)]
    p = int(rng.integers(0, len(seq) - ref_len + 1))
    ref = seq[p : p + ref_len].upper()
    if kind in ("snv", "mnv"):
        alt = "".join(OTHER.get(b, "A") for b in ref)
    elif kind == "deletion":
        alt = ref[0]
    else:
        alt = ref + "".join(rng.choice(list("ACGT"), size - 1))
    return p, ref, alt


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize("seq_len", [59, 60, 100])
def test_windows_equal_brute_force_slices_on_both_strands(
    fasta: Path, contigs: dict[str, str], seq_len: int
) -> None:
    rng = np.random.default_rng(seq_len)
    with open_genome(fasta) as genome:
        for _ in range(400):
            contig = str(rng.choice(list(contigs)))
            seq = contigs[contig]
            p, ref, alt = random_allele(rng, seq, max_len=8)
            allele = Allele(
                contig, p + 1, ".", ref, alt, contig=contig, scored_ref=ref, scored_alt=alt
            )
            ref_window, alt_window = allele_windows(genome, allele, seq_len)
            expected_ref, expected_alt = brute_windows(seq, p, ref, alt, seq_len)
            assert (ref_window, alt_window) == (expected_ref, expected_alt), (contig, p, ref, alt)
            assert len(ref_window) == len(alt_window) == seq_len
            assert ref_window[seq_len // 2 :].startswith(ref) and alt_window[
                seq_len // 2 :
            ].startswith(alt)
            # The genome's own sequence when REF matches it.
            assert ref_window == brute_windows(seq, p, "", "", seq_len)[0]
            for window, expected in ((ref_window, expected_ref), (alt_window, expected_alt)):
                reverse = reverse_complement_onehot(codes_to_onehot(encode(window)))
                assert (reverse == codes_to_onehot(encode(revcomp(expected)))).all()


# --------------------------------------------------------------------------- scores


def test_scores_are_the_model_on_brute_force_windows(
    tmp_path: Path, model, fasta: Path, contigs: dict[str, str]
) -> None:
    rng = np.random.default_rng(3)
    seq = contigs["chr1"]
    variants = sorted(random_allele(rng, seq, max_len=6) for _ in range(40))
    vcf = write_vcf(
        tmp_path / "v.vcf", [f"chr1 {p + 1} v{i} {r} {a}" for i, (p, r, a) in enumerate(variants)]
    )
    rows, summary = score(model, vcf, fasta, tmp_path / "out.tsv", batch_size=8)
    assert summary.scored == len(rows) == 40 and summary.skipped == {}
    windows = [brute_windows(seq, p, r, a, L) for p, r, a in variants]
    ref_prob = strand_mean(model, [w[0] for w in windows])
    alt_prob = strand_mean(model, [w[1] for w in windows])
    for i, row in enumerate(rows):
        assert (row["chrom"], int(row["pos"]), row["id"]) == ("chr1", variants[i][0] + 1, f"v{i}")
        for t, name in enumerate(NAMES):
            ref, alt = float(row[f"{name}:ref"]), float(row[f"{name}:alt"])
            assert ref == pytest.approx(ref_prob[i, t], rel=1e-5)
            assert alt == pytest.approx(alt_prob[i, t], rel=1e-5)
            assert float(row[f"{name}:diff"]) == pytest.approx(alt - ref, abs=2e-6)
            assert float(row[f"{name}:abs_diff"]) == pytest.approx(abs(alt - ref), abs=2e-6)
            logit = np.log(ref_prob[i, t] / (1 - ref_prob[i, t]))
            logit_alt = np.log(alt_prob[i, t] / (1 - alt_prob[i, t]))
            assert float(row[f"{name}:log_odds_diff"]) == pytest.approx(
                logit_alt - logit, rel=1e-4, abs=1e-6
            )
    assert 0 < LOG_ODDS_EPSILON < 1e-3


def test_targets_are_chosen_by_name_with_suggestions(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    vcf = write_vcf(tmp_path / "v.vcf", [f"chr1 100 . {contigs['chr1'][99].upper()} N"])
    rows, _ = score(model, vcf, fasta, tmp_path / "all.tsv")
    chosen, _ = score(model, vcf, fasta, tmp_path / "two.tsv", chosen=["t2", "t0"])
    assert list(chosen[0])[7:] == [
        f"{t}:{s}"
        for t in ("t2", "t0")
        for s in ("ref", "alt", "diff", "abs_diff", "log_odds_diff")
    ]
    assert chosen[0]["t2:diff"] == rows[0]["t2:diff"] and chosen[0]["t0:ref"] == rows[0]["t0:ref"]
    with pytest.raises(PredictError, match="did you mean t1"):
        target_indices(NAMES, ["t11"])
    with pytest.raises(PredictError, match="no targets"):
        target_indices(NAMES, [])


# --------------------------------------------------------------------------- defects


def test_every_defect_gets_its_flag_or_reason(tmp_path: Path, model, fasta: Path, contigs) -> None:
    c1, c2 = contigs["chr1"].upper(), contigs["chr2"].upper()
    at = lambda p: c1[p - 1]  # noqa: E731  (1-based)
    rows = [
        f"chr1 3 edge_left {at(3)} {OTHER[at(3)]}",
        f"chr1 100 ok {at(100)} {OTHER[at(100)]}",
        f"chr1 110 mismatch {OTHER[at(110)]} {OTHER[OTHER[at(110)]]}",
        f"chr1 120 swapped {OTHER[at(120)]} {at(120)}",
        f"chr1 130 multi {at(130)} {OTHER[at(130)]},{OTHER[OTHER[at(130)]]},<DEL>",
        f"chr1 140 symbolic {at(140)} <INS:ME>",
        f"chr1 150 star {at(150)} *",
        f"chr1 160 bnd {at(160)} {at(160)}[chr2:10[",
        f"chr1 170 same {at(170)} {at(170)}",
        f"chr1 180 long {c1[179:241]} {at(180)}",
        f"chr1 190 noalt {at(190)} .",
        "chr1 401 outside A G",
        f"chr2 149 edge_right {c2[148]} {OTHER[c2[148]]}",
        "chr9 10 nocontig A G",
    ]
    vcf = write_vcf(tmp_path / "v.vcf", rows, ("chr1", "chr2", "chr9"))
    out, summary = score(model, vcf, fasta, tmp_path / "out.tsv")
    got = {(r["id"], r["alt"]): (r["flags"], r["skipped"]) for r in out}
    expected = {
        ("edge_left", OTHER[at(3)]): ("edge", "."),
        ("ok", OTHER[at(100)]): (".", "."),
        ("mismatch", OTHER[OTHER[at(110)]]): ("ref_mismatch", "."),
        ("swapped", at(120)): ("swapped", "."),
        ("multi", OTHER[at(130)]): (".", "."),
        ("multi", OTHER[OTHER[at(130)]]): (".", "."),
        ("multi", "<DEL>"): (".", "symbolic"),
        ("symbolic", "<INS:ME>"): (".", "symbolic"),
        ("star", "*"): (".", "spanning_deletion"),
        ("bnd", f"{at(160)}[chr2:10["): (".", "breakend"),
        ("same", at(170)): (".", "alt_equals_ref"),
        ("long", at(180)): (".", "allele_too_long"),
        ("noalt", "."): (".", "no_alt"),
        ("outside", "G"): (".", "outside_contig"),
        ("edge_right", OTHER[c2[148]]): ("edge", "."),
        ("nocontig", "G"): (".", "contig_not_in_fasta"),
    }
    assert got == expected
    assert len(out) == 16 and summary.records == 14 and summary.alleles == 16
    assert summary.scored == 7 and sum(summary.skipped.values()) == 9
    assert summary.flags == {"edge": 2, "ref_mismatch": 1, "swapped": 1}
    assert set(summary.skipped) == set(SKIP_REASONS)  # every reason there is
    assert set(summary.flags) | {"fixed"} == set(FLAGS)  # fixed: see the swapped test
    skipped = [r for r in out if r["skipped"] != "."]
    assert all(r[f"{t}:ref"] == "NA" for r in skipped for t in NAMES)
    # A multi-allelic record: one row per ALT, sharing the reference window.
    multi = [r for r in out if r["id"] == "multi" and r["skipped"] == "."]
    assert multi[0]["t0:ref"] == multi[1]["t0:ref"] and multi[0]["t0:alt"] != multi[1]["t0:alt"]


def test_max_allele_length_setting_and_window_limit(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    c1 = contigs["chr1"].upper()
    vcf = write_vcf(
        tmp_path / "v.vcf",
        [f"chr1 100 d5 {c1[99:105]} {c1[99]}", f"chr1 200 d30 {c1[199:230]} {c1[199]}"],
    )
    out, _ = score(model, vcf, fasta, tmp_path / "a.tsv", max_allele_length=5)
    assert [r["skipped"] for r in out] == ["allele_too_long", "allele_too_long"]
    out, _ = score(model, vcf, fasta, tmp_path / "b.tsv", max_allele_length=50)
    # 31 bases do not fit the L - L//2 = 30 from the centre to the window's end.
    assert [r["skipped"] for r in out] == [".", "allele_too_long"]


def test_swapped_alleles_are_scored_the_right_way_round_when_fixed(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    g = contigs["chr1"][149].upper()
    right = write_vcf(tmp_path / "right.vcf", [f"chr1 150 right {g} {OTHER[g]}"])
    swapped = write_vcf(tmp_path / "swapped.vcf", [f"chr1 150 swapped {OTHER[g]} {g}"])
    (row,), _ = score(model, right, fasta, tmp_path / "right.tsv")
    (as_written,), _ = score(model, swapped, fasta, tmp_path / "written.tsv")
    (fixed,), summary = score(model, swapped, fasta, tmp_path / "fixed.tsv", fix_swapped=True)
    assert (fixed["flags"], fixed["ref"], fixed["alt"]) == ("swapped,fixed", OTHER[g], g)
    assert summary.flags == {"swapped": 1, "fixed": 1}
    for t in NAMES:
        # Fixed: the genome is the reference, as for the correctly written variant.
        for s in ("ref", "alt", "diff", "log_odds_diff"):
            assert fixed[f"{t}:{s}"] == row[f"{t}:{s}"]
        # As written: REF put into the genome, so ref and alt exchange places.
        assert (as_written[f"{t}:ref"], as_written[f"{t}:alt"]) == (
            row[f"{t}:alt"],
            row[f"{t}:ref"],
        )
        assert as_written["flags"] == "swapped"


def test_chromosome_names_are_reconciled_and_reported(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    b1, bm = contigs["chr1"][99].upper(), contigs["chrM"][9].upper()
    native = write_vcf(
        tmp_path / "native.vcf",
        [f"chr1 100 a {b1} {OTHER[b1]}", f"chrM 10 b {bm} {OTHER[bm]}"],
        ("chr1", "chrM"),
    )
    ensembl = write_vcf(
        tmp_path / "ensembl.vcf",
        [f"1 100 a {b1} {OTHER[b1]}", f"MT 10 b {bm} {OTHER[bm]}"],
        ("1", "MT"),
    )
    rows, summary = score(model, native, fasta, tmp_path / "native.tsv")
    renamed, renamed_summary = score(model, ensembl, fasta, tmp_path / "ensembl.tsv")
    assert summary.renames == {} and renamed_summary.renames == {"1": "chr1", "MT": "chrM"}
    assert [r["chrom"] for r in renamed] == ["1", "MT"]  # as in the VCF
    for row, other in zip(rows, renamed):
        assert {k: v for k, v in row.items() if k != "chrom"} == {
            k: v for k, v in other.items() if k != "chrom"
        }


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("chr1\tx20\t.\tA\tG\t.\t.\t.", "malformed VCF record"),
        ("chr1\t20\t.\tA", "malformed VCF record"),
        ("", "malformed VCF record"),
        ("chr1\t20\t.\tAZ\tG\t.\t.\t.", "REF 'AZ'"),
        ("chr1\t20\t.\tA\tG?\t.\t.\t.", "ALT 'G\\?'"),
        ("chr1\t0\t.\tA\tG\t.\t.\t.", "POS 0"),
    ],
)
def test_a_malformed_line_is_an_error_naming_it(
    tmp_path: Path, model, fasta: Path, bad_line: str, message: str
) -> None:
    good = "\t".join(["chr1", "30", ".", "A", "G", ".", ".", "."])
    text = (
        "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    )
    text += "\n".join([good] * 5 + [bad_line] + [good]) + "\n"
    (tmp_path / "bad.vcf").write_text(text)
    pysam.tabix_compress(str(tmp_path / "bad.vcf"), str(tmp_path / "bad.vcf.gz"))
    for vcf in (tmp_path / "bad.vcf", tmp_path / "bad.vcf.gz"):
        out = tmp_path / "out.tsv"
        with pytest.raises(DataError, match=rf"{vcf.name} line 9: .*{message}"):
            score(model, vcf, fasta, out, batch_size=4)
        assert not out.exists() and list(tmp_path.glob(".tmp-*")) == []


# --------------------------------------------------------------------------- determinism


def test_two_runs_are_byte_identical_and_duplicates_identical(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    rng = np.random.default_rng(11)
    variants = sorted(random_allele(rng, contigs["chr1"], max_len=5) for _ in range(30))
    rows = [f"chr1 {p + 1} . {r} {a}" for p, r, a in variants]
    rows = sorted(rows + rows[::3], key=lambda r: int(r.split()[1]))  # duplicates
    vcf = write_vcf(tmp_path / "v.vcf", rows)
    outputs = []
    for run in ("a", "b"):
        score(
            model,
            vcf,
            fasta,
            tmp_path / f"{run}.tsv",
            out_vcf=tmp_path / f"{run}.vcf.gz",
            batch_size=6,
        )
        outputs.append(
            ((tmp_path / f"{run}.tsv").read_bytes(), (tmp_path / f"{run}.vcf.gz").read_bytes())
        )
    assert outputs[0] == outputs[1]
    lines = outputs[0][0].decode().splitlines()[1:]
    assert len(lines) == 40
    by_variant: dict[str, set[str]] = {}
    for line in lines:
        by_variant.setdefault("\t".join(line.split("\t")[:5]), set()).add(line)
    assert len(by_variant) == len(set(rows)) and all(len(v) == 1 for v in by_variant.values())


# --------------------------------------------------------------------------- VCF output


def test_vcf_output_is_bgzipped_indexed_and_matches_the_tsv(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    c1 = contigs["chr1"].upper()
    rows = [f"chr1 100 a {c1[99]} {OTHER[c1[99]]},<DEL>", f"chr1 200 b {c1[199]} {OTHER[c1[199]]}"]
    vcf = write_vcf(tmp_path / "v.vcf", rows)
    names = ["t0", "odd name|x", "t2"]
    with open_genome(fasta) as genome:
        score_variants(
            model, vcf, genome, names, tmp_path / "o.tsv", tmp_path / "o.vcf.gz", progress=None
        )
    assert (tmp_path / "o.vcf.gz.tbi").is_file()
    tsv = read_tsv(tmp_path / "o.tsv")
    with pysam.VariantFile(str(tmp_path / "o.vcf.gz")) as out:
        described = out.header.info["DANQ_DIFF_odd_name_x"].description
        records = list(out.fetch("chr1", 150, 250))  # the index works
        assert len(records) == 1 and records[0].id == "b"
    assert "odd name|x" in described
    with pysam.VariantFile(str(tmp_path / "o.vcf.gz")) as out:
        first, second = list(out)
    assert first.alts == (OTHER[c1[99]], "<DEL>")
    assert first.info["DANQ_SKIP"] == (".", "symbolic")
    assert first.info["DANQ_DIFF_t0"][1] is None
    assert first.info["DANQ_DIFF_t0"][0] == pytest.approx(float(tsv[0]["t0:diff"]), rel=1e-6)
    assert second.info["DANQ_LOGODDS_odd_name_x"][0] == pytest.approx(
        float(tsv[2]["odd name|x:log_odds_diff"]), rel=1e-6
    )


def test_vcf_output_declares_what_the_input_used_undeclared(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    c1, c2 = contigs["chr1"].upper(), contigs["chr2"].upper()
    text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    text += f"chr1\t100\ta\t{c1[99]}\tN\t.\tq10\tDP=3\nchr2\t50\tb\t{c2[49]}\tN\t.\t.\t.\n"
    (tmp_path / "v.vcf").write_text(text)
    score(model, tmp_path / "v.vcf", fasta, tmp_path / "o.tsv", out_vcf=tmp_path / "o.vcf.gz")
    with pysam.VariantFile(str(tmp_path / "o.vcf.gz")) as out:
        assert list(out.header.contigs) == ["chr1", "chr2"]
        records = list(out)
    assert [(r.chrom, r.id, list(r.filter)) for r in records] == [
        ("chr1", "a", ["q10"]),
        ("chr2", "b", []),
    ]
    assert records[0].info["DP"] == "3" and "DANQ_DIFF_t0" in records[1].info


def test_unsorted_vcf_cannot_be_indexed_and_nothing_is_written(
    tmp_path: Path, model, fasta: Path, contigs
) -> None:
    c1 = contigs["chr1"].upper()
    vcf = write_vcf(tmp_path / "v.vcf", [f"chr1 200 . {c1[199]} N", f"chr1 100 . {c1[99]} N"])
    with pytest.raises(DataError, match="sorted"):
        score(model, vcf, fasta, tmp_path / "o.tsv", out_vcf=tmp_path / "o.vcf.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genome.fa", "genome.fa.fai", "v.vcf"]
    # Uncompressed VCF output needs no index: unsorted input is fine.
    score(model, vcf, fasta, tmp_path / "o.tsv", out_vcf=tmp_path / "o.vcf")
    assert [r.pos for r in pysam.VariantFile(str(tmp_path / "o.vcf"))] == [200, 100]


# --------------------------------------------------------------------------- command line


def save_model_folder(model, path: Path, genome: dict | None) -> Path:
    """An MLflow model folder as training logs it: target names and the genome in MLmodel."""
    import mlflow.keras

    metadata = {"target_names": NAMES, **({"genome": genome} if genome else {})}
    mlflow.keras.save_model(
        model, str(path), metadata=metadata, save_exported_model=False, pip_requirements=[]
    )
    return path


def test_cli_scores_a_vcf_and_checks_the_genome_build(
    tmp_path: Path, model, fasta: Path, contigs, capsys: pytest.CaptureFixture[str]
) -> None:
    b = contigs["chr1"][99].upper()
    vcf = write_vcf(tmp_path / "v.vcf", [f"1 100 rs1 {b} {OTHER[b]}", "1 120 sv A <DEL>"], ("1",))
    (tmp_path / "targets.txt").write_text("t1\n")
    trained = {"build": "synthetic", "contigs": {"chr1": 400, "chr2": 150}, "fasta_md5": None}
    model_dir = save_model_folder(model, tmp_path / "model", trained)
    base = ["--params", str(tmp_path / "none.yaml"), "-S", f"paths.data_dir={tmp_path}/data"]
    argv = [
        *base,
        "variant-effect",
        "--vcf",
        str(vcf),
        "--fasta",
        str(fasta),
        "--model",
        str(model_dir),
    ]
    out = tmp_path / "o.tsv"
    assert (
        main(
            [
                *argv,
                "--out",
                str(out),
                "--vcf-out",
                str(tmp_path / "o.vcf.gz"),
                "--targets",
                "@" + str(tmp_path / "targets.txt"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "scored 1 of 2 alleles (2 records) for 1 targets" in printed
    assert "contig names reconciled with" in printed and "1 -> chr1" in printed
    assert "skipped: symbolic 1" in printed
    assert (
        out.read_text()
        .splitlines()[0]
        .endswith("\tt1:ref\tt1:alt\tt1:diff\tt1:abs_diff\tt1:log_odds_diff")
    )
    assert (tmp_path / "o.vcf.gz.tbi").is_file()

    # Another build: refused, nothing written; allowed with --allow-build-mismatch.
    other = {"build": "synthetic", "contigs": {"chr1": 500}, "fasta_md5": None}
    other_dir = save_model_folder(model, tmp_path / "other", other)
    argv[argv.index(str(model_dir))] = str(other_dir)
    refused = tmp_path / "refused.tsv"
    assert main([*argv, "--out", str(refused)]) == 1
    err = capsys.readouterr().err
    assert "genome build mismatch: chr1: 500 bp in the training genome, 400 bp" in err
    assert "--allow-build-mismatch" in err and not refused.exists()
    assert main([*argv, "--out", str(refused), "--allow-build-mismatch", "--targets", "t1x"]) == 1
    assert (
        "target 't1x' is not one of the model's 3 targets; did you mean t1"
        in capsys.readouterr().err
    )
    assert main([*argv, "--out", str(refused), "--allow-build-mismatch"]) == 0
    assert "genome build mismatch allowed" in capsys.readouterr().err
    assert (
        main([*argv, "--out", str(refused), "--genome-build", "other", "--allow-build-mismatch"])
        == 0
    )
    assert "trained on synthetic" in capsys.readouterr().err


def test_cli_errors_name_the_input(tmp_path: Path, model_file: Path, fasta: Path, capsys) -> None:
    vcf = write_vcf(tmp_path / "v.vcf", ["chr1 5 . A G"])
    (tmp_path / "plain.fa.gz").write_bytes(gzip.compress(fasta.read_bytes()))
    (tmp_path / "plain.vcf.gz").write_bytes(gzip.compress(vcf.read_bytes()))
    out = str(tmp_path / "o.tsv")
    cases = [
        ([str(vcf), str(tmp_path / "plain.fa.gz"), out], "plain.fa.gz: compressed with plain gzip"),
        ([str(tmp_path / "plain.vcf.gz"), str(fasta), out], "plain.vcf.gz: compressed with plain"),
        ([str(tmp_path / "none.vcf"), str(fasta), out], "none.vcf: VCF not found"),
        ([str(vcf), str(fasta), str(vcf), "--vcf-out", str(vcf)], "same file"),
    ]
    for (vcf_in, fasta_in, tsv, *more), message in cases:
        argv = ["--model", str(model_file), "--vcf", vcf_in, "--fasta", fasta_in, "--out", tsv]
        code = main(["--params", str(tmp_path / "none.yaml"), "variant-effect", *argv, *more])
        assert code == 1 and message in capsys.readouterr().err
        assert not Path(out).exists()


def test_a_vcf_line_over_the_limit_is_refused_before_htslib_reads_it(
    tmp_path: Path, model_file: Path, fasta: Path, capsys
) -> None:
    vcf = write_vcf(tmp_path / "v.vcf", ["chr1 5 . A G", "chr1 9 . C " + "T" * 500])
    out = tmp_path / "o.tsv"
    argv = ["--model", str(model_file), "--vcf", str(vcf), "--fasta", str(fasta), "--out", str(out)]
    code = main(["--params", str(tmp_path / "none.yaml"), "-S", "limits.max_line_length=200",
                 "variant-effect", *argv])  # fmt: skip
    assert code == 1
    assert "v.vcf line 5: longer than 200 bytes (limits.max_line_length)" in capsys.readouterr().err
    assert not out.exists()
