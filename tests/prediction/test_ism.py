"""`danq ism`: exact zeros at the reference base, values equal to scoring the mutated windows
directly, windows centred as `danq predict` centres them, region errors, the files written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from danq.cli.main import main
from danq.data.encoding import decode
from danq.errors import PredictError
from danq.prediction.ism import (
    fasta_sequences,
    genome_sequences,
    parse_region,
    saturation_mutagenesis,
)

from .test_predict import NAMES, L, random_dna, strand_mean

CONTIG = random_dna(300, 11)
GAP = (100, 110)  # an N run in the genome


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-contig genome FASTA (chr1 with an N run, chr2), plain text, indexed by pysam."""
    path = tmp_path_factory.mktemp("genome") / "genome.fa"
    chr1 = CONTIG[: GAP[0]] + "N" * (GAP[1] - GAP[0]) + CONTIG[GAP[1] :]
    path.write_text(f">chr1\n{chr1}\n>chr2 second contig\n{random_dna(90, 12)}\n")
    return path


def mutated(text: str, position: int, base: str) -> str:
    return text[:position] + base + text[position + 1 :]


def fasta_windows(records: dict[str, str]):
    """fasta_sequences over records written to a temporary FASTA."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.fa"
        path.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
        return list(fasta_sequences(str(path), L))


def test_ism_is_zero_at_the_reference_and_equals_scoring_the_mutants(model) -> None:
    (sequence,) = fasta_windows({"s": CONTIG[:L]})
    result = saturation_mutagenesis(model, sequence, [0, 1, 2], NAMES, batch_size=37)
    ref_text = CONTIG[:L]
    assert result.ism.shape == (L, 4, 3)
    refs = ["AGCT".index(b) for b in ref_text]
    assert (result.ism[np.arange(L), refs, :] == 0).all()
    assert np.isfinite(result.ism).all()
    # Every alternative differs from the reference somewhere: all 3L mutants were scored.
    others = np.ones((L, 4), dtype=bool)
    others[np.arange(L), refs] = False
    assert (result.ism[others] != 0).any(axis=-1).mean() > 0.9
    rng = np.random.default_rng(0)
    picks = [(int(p), "AGCT"[int(b)]) for p, b in zip(rng.integers(0, L, 6), rng.integers(0, 4, 6))]
    picks = [(p, b) for p, b in picks if b != ref_text[p]]
    windows = [ref_text] + [mutated(ref_text, p, b) for p, b in picks]
    direct = strand_mean(model, windows)
    np.testing.assert_allclose(result.ref, direct[0], rtol=1e-5, atol=1e-6)
    for (p, b), scores in zip(picks, direct[1:], strict=True):
        np.testing.assert_allclose(
            result.ism[p, "AGCT".index(b)], scores - direct[0], rtol=1e-4, atol=1e-6
        )
    np.testing.assert_allclose(result.importance, -result.ism.sum(axis=1) / 3)


def test_region_windows_are_centred_as_predict_centres_records(genome: Path) -> None:
    long, short, edge, gap, other = genome_sequences(
        str(genome), ["chr1:1-300", "chr1:201-210", "chr1:3-5", "chr1:96-115", "2:1-90"], L
    )
    # At least L bases: the window is the middle L of the region, all of it mutated.
    assert long.window_start == 120 and (long.first, long.last) == (0, L)
    assert decode_window(long) == CONTIG[120:180]
    # A shorter region: the window is centred on it, only its own bases are mutated.
    assert short.window_start == 200 + (10 - L) // 2
    assert decode_window(short) == CONTIG[short.window_start : short.window_start + L]
    assert (short.first, short.last) == (200 - short.window_start, 210 - short.window_start)
    # Near the contig start the window is padded with N, which is never mutated.
    assert edge.window_start == 2 + (3 - L) // 2 < 0
    assert decode_window(edge).startswith("N" * -edge.window_start)
    gap_positions = gap.window_start + gap.mutated
    assert len(gap.mutated) == 10 and not ((gap_positions >= 100) & (gap_positions < 110)).any()
    # "2" is found as chr2 (contig names reconciled as for variant effects).
    assert other.contig == "chr2" and other.window_start == 15


def decode_window(sequence) -> str:
    return decode(sequence.window)


def test_reference_n_is_not_mutated_and_reads_nan(model, genome: Path) -> None:
    (gap,) = genome_sequences(str(genome), ["chr1:96-115"], L)
    result = saturation_mutagenesis(model, gap, [1], ["t1"], batch_size=100)
    n_rows = np.isnan(result.ism).all(axis=(1, 2))
    assert n_rows.sum() == 10 and np.isfinite(result.ism[~n_rows]).all()


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("chr1", "expected contig:start-end"),
        ("chr1:10", "expected contig:start-end"),
        ("chr1:0-10", "start must be at least 1"),
        ("chr1:20-10", "end at least start"),
        ("chr1:a-10", "expected contig:start-end"),
        ("chrX:1-10", "contig 'chrX' is not in"),
        ("chr2:80-91", "ends past the end of chr2 (90 bp)"),
    ],
)
def test_bad_regions_are_named(genome: Path, region: str, message: str) -> None:
    with pytest.raises(PredictError, match=f"region '{region}'") as err:
        genome_sequences(str(genome), [region], L)
    assert message in str(err.value)


def test_region_parsing_is_one_based_inclusive() -> None:
    region = parse_region("chr7:1,001-1,010")
    assert (region.contig, region.start, region.end) == ("chr7", 1000, 1010)
    assert str(region) == "chr7:1001-1010"


def test_fasta_records_get_predicts_centred_window(model) -> None:
    short, long = fasta_windows({"short": CONTIG[:21], "long": CONTIG[:101]})
    assert short.window_start == -20 and (short.first, short.last) == (20, 41)
    assert long.window_start == 20 and (long.first, long.last) == (0, L)
    result = saturation_mutagenesis(model, short, [0, 2], ["t0", "t2"], batch_size=1000)
    assert result.ism.shape == (21, 4, 2)


def run_ism(tmp_path: Path, *argv: str) -> int:
    return main(
        ["--params", str(tmp_path / "none.yaml"), "-S", "paths.data_dir=none", "ism", *argv]
    )


def test_cli_writes_arrays_plots_and_summary(
    model_file: Path, genome: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    chosen = tmp_path / "chosen.txt"
    chosen.write_text("t2\nt0\n")
    out = tmp_path / "ism"
    common = ["--model", str(model_file), "--target-names", str(names), "--out", str(out)]
    code = run_ism(
        tmp_path,
        "--fasta",
        str(genome),
        "--region",
        "chr1:201-215",
        "--targets",
        "@" + str(chosen),
        *common,
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "chr1_201-215.0.t0.png",
        "chr1_201-215.2.t2.png",
        "chr1_201-215.npz",
        "summary.tsv",
    ]
    arrays = np.load(out / "chr1_201-215.npz")
    assert list(arrays["targets"]) == ["t2", "t0"] and list(arrays["target_indices"]) == [2, 0]
    assert arrays["ism"].shape == (15, 4, 2)
    assert list(arrays["positions"]) == list(range(201, 216))
    assert str(arrays["sequence"]) == CONTIG[200:215]
    np.testing.assert_allclose(arrays["importance"], -arrays["ism"].sum(axis=1) / 3, rtol=1e-6)
    header, *rows = (out / "summary.tsv").read_text().splitlines()
    assert header.split("\t")[:3] == ["name", "contig", "window_start"] and len(rows) == 2
    assert rows[0].split("\t")[7] == "t2"

    # Refused before anything is written; the earlier output stays as it was.
    code = run_ism(tmp_path, "--fasta", str(genome), "--region", "chr1:5-1", *common)
    assert code == 1 and "region 'chr1:5-1'" in capsys.readouterr().err
    assert (out / "chr1_201-215.npz").exists()
    code = run_ism(tmp_path, "--input", str(genome), "--region", "chr1:1-5", *common)
    assert code == 1 and "either --fasta with --region, or --input" in capsys.readouterr().err


def test_cli_fasta_input_without_plots_and_unknown_targets(
    model_file: Path, tmp_path: Path, write_fasta, capsys: pytest.CaptureFixture[str]
) -> None:
    seqs = write_fasta(tmp_path / "seqs.fa.gz", {"a/1": CONTIG[:30], "b": CONTIG[:80]})
    out = tmp_path / "ism"
    common = ["--model", str(model_file), "--input", str(seqs), "--out", str(out)]
    code = run_ism(tmp_path, *common, "--targets", "target_1", "--no-plots")
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_1.npz", "b.npz", "summary.tsv"]
    a = np.load(out / "a_1.npz")
    assert a["ism"].shape == (30, 4, 1) and list(a["positions"]) == list(range(1, 31))
    assert int(a["window_start"]) == 1 + (30 - L) // 2
    assert np.load(out / "b.npz")["ism"].shape == (L, 4, 1)
    code = run_ism(tmp_path, *common, "--targets", "target_1,CTCF")
    assert code == 1 and "target 'CTCF' is not one of the model's 3 targets" in (
        capsys.readouterr().err
    )
