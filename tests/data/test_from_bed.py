"""`danq data from-bed`: a DeepSEA-layout data set from a genome FASTA and peak files, on the
planted-motif genome of tests/data/own_genome.py."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest

from danq.artifacts import DATA_BINS_SUFFIX, DATA_METADATA_FILE, FROM_BED_GENERATOR
from danq.cli.main import main
from danq.config import SPLITS, FromBedConfig, ValidateConfig
from danq.data.encoding import codes_to_onehot, encode
from danq.data.from_bed import bin_range, build_dataset
from danq.errors import DataError
from danq.io.deepsea import open_split
from danq.io.genome import file_md5
from danq.validation.gate import validate_dataset

from .own_genome import CONTIGS, N_RUN, Genome, write_genome

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Genome:
    return write_genome(tmp_path_factory.mktemp("genome"), contig_length=60_000)


@pytest.fixture(scope="module")
def built(genome: Genome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("from_bed") / "data"
    build_dataset(genome.fasta, genome.sheet, out, FromBedConfig(chunk_bins=70), 7, False)
    return out


def _bins(data: Path, split: str) -> list[tuple[str, int, int]]:
    lines = (data / f"{split}{DATA_BINS_SUFFIX}").read_text().splitlines()
    return [(c, int(s), int(e)) for c, s, e in (line.split("\t") for line in lines)]


def _read(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with open_split(data / f"{split}.mat", split) as reader:
        x, y = reader.read(0, reader.n)
    assert y is not None
    return x, y


def _raw_peaks(genome: Genome) -> dict[str, list[tuple[str, int, int]]]:
    out = {}
    for name, path in genome.peaks.items():
        rows = [line.split("\t")[:3] for line in path.read_text().splitlines()[1:]]
        out[name] = [(c, int(s), int(e)) for c, s, e in rows]
    return out


def _gc(x: np.ndarray) -> np.ndarray:
    """GC share of the called bases of each one-hot window (channels A, G, C, T)."""
    bases = x.sum(axis=(1, 2))
    return x[:, :, 1:3].sum(axis=(1, 2)) / np.maximum(bases, 1)


def test_no_window_lies_on_a_held_out_chromosome(genome: Genome, built: Path) -> None:
    flank = (1000 - 200) // 2
    seen = set()
    for split in SPLITS:
        bins = _bins(built, split)
        chroms = {c for c, _, _ in bins}
        seen |= chroms
        expected = {"train": set(CONTIGS) - {"chr7", "chr8", "chr9"}, "valid": {"chr7"}}
        assert chroms <= expected.get(split, {"chr8", "chr9"})
        # Every window lies inside its contig, so no window reaches into another chromosome.
        assert all(s - flank >= 0 and e + flank <= genome.contig_length for _, s, e in bins)
    assert seen == set(CONTIGS)  # the whole genome was binned


def test_windows_are_the_genome_centred_on_the_bin_with_reverse_complements(
    genome: Genome, built: Path
) -> None:
    with pysam.FastaFile(str(genome.fasta)) as fasta:
        for split in SPLITS:
            x, _ = _read(built, split)
            bins = _bins(built, split)
            n = len(bins)
            assert len(x) == 2 * n
            for i in np.random.default_rng(1).choice(n, size=min(n, 30), replace=False):
                chrom, start, end = bins[i]
                window = fasta.fetch(chrom, start - 400, end + 400)
                np.testing.assert_array_equal(x[i], codes_to_onehot(encode(window)))
                np.testing.assert_array_equal(x[n + i], x[i][::-1, ::-1])


def test_labels_equal_a_brute_force_overlap_on_random_bins(genome: Genome, built: Path) -> None:
    peaks = _raw_peaks(genome)
    names = list(peaks)
    labelled: dict[tuple[str, int], np.ndarray] = {}
    for split in SPLITS:
        _, y = _read(built, split)
        for (chrom, start, _), labels in zip(_bins(built, split), y):
            labelled[(chrom, start)] = labels
    rng = np.random.default_rng(2)
    first, stop = bin_range(genome.contig_length, FromBedConfig())
    checked_positive = 0
    for _ in range(400):
        chrom = CONTIGS[int(rng.integers(len(CONTIGS)))]
        start = int(rng.integers(first, stop)) * 200
        expected = np.zeros(len(names), dtype=np.uint8)
        for t, name in enumerate(names):
            covered = np.zeros(200, dtype=bool)
            for c, s, e in peaks[name]:
                if c == chrom and s < start + 200 and e > start:
                    covered[max(s, start) - start : min(e, start + 200) - start] = True
            expected[t] = covered.sum() >= 100
        in_n_run = chrom == "chr2" and start + 600 > N_RUN[0] and start - 400 < N_RUN[1]
        if expected.any() and not in_n_run:
            assert (chrom, start) in labelled, f"positive bin {chrom}:{start} missing"
            checked_positive += 1
        if (chrom, start) in labelled:
            np.testing.assert_array_equal(labelled[(chrom, start)], expected, f"{chrom}:{start}")
    assert checked_positive > 20


def test_gc_matched_negatives_share_the_positives_gc(genome: Genome, tmp_path: Path) -> None:
    """gc_matched with the default 50 strata (width 0.02): mean GC of negatives within 0.02
    of the positives'; random negatives, drawn from the GC-poorer background, are not."""
    differences = {}
    for negatives in ("gc_matched", "random"):
        out = tmp_path / negatives
        cfg = FromBedConfig(negatives=negatives, chunk_bins=500)
        build_dataset(genome.fasta, genome.sheet, out, cfg, 7, False)
        x, y = _read(out, "train")
        gc, positive = _gc(x[: len(x) // 2]), y[: len(y) // 2].any(axis=1)
        assert 0.7 < (~positive).sum() / positive.sum() < 1.3  # negative_ratio 1
        differences[negatives] = abs(gc[positive].mean() - gc[~positive].mean())
    assert differences["gc_matched"] < 0.02 < differences["random"], differences


def test_output_passes_the_data_gate_and_records_metadata(
    genome: Genome, built: Path, tmp_path: Path
) -> None:
    report = validate_dataset(built, ValidateConfig(), tmp_path / "validation")
    assert report.passed, [(c.name, c.split, c.message) for c in report.failures]
    metadata = json.loads((built / DATA_METADATA_FILE).read_text())
    assert metadata["generator"] == FROM_BED_GENERATOR
    assert [t["name"] for t in metadata["targets"]] == ["motif_a", "motif_b", "noise"]
    assert metadata["categories"] == {"TF": [0, 1], "all": [2]}
    assert metadata["genome"] == {
        "build": None,
        "fasta_md5": file_md5(genome.fasta),
        "contigs": {c: genome.contig_length for c in CONTIGS},
    }
    assert metadata["settings"]["valid_chroms"] == ["chr7"]
    for split in SPLITS:
        counts = metadata["counts"][split]
        assert metadata["samples"][split] == 2 * counts["forward"] == 2 * len(_bins(built, split))
        _, y = _read(built, split)
        assert counts["target_positives"] == y[: counts["forward"]].sum(axis=0).tolist()
    assert metadata["counts"]["train"]["dropped_n"] > 0  # the N run on chr2


def test_blacklist_and_peaks_mode(genome: Genome, tmp_path: Path) -> None:
    blacklist = tmp_path / "blacklist.bed"
    blacklist.write_text("chr1\t10000\t20000\nchr3\t0\t60000\n")
    cfg = FromBedConfig(blacklist=str(blacklist), bins="peaks", chunk_bins=1000)
    build_dataset(genome.fasta, genome.sheet, tmp_path / "out", cfg, 7, False)
    bins = _bins(tmp_path / "out", "train")
    assert not any(c == "chr3" for c, _, _ in bins)
    assert not any(c == "chr1" and s + 600 > 10000 and s - 400 < 20000 for c, s, _ in bins)
    # peaks mode keeps every bin a peak touches whose window fits in the contig.
    first, stop = bin_range(genome.contig_length, cfg)
    touched = {
        (c, b * 200)
        for c, s, e in _raw_peaks(genome)["motif_a"]
        for b in range(s // 200, (e - 1) // 200 + 1)
        if c in ("chr4", "chr5") and first <= b < stop
    }
    assert touched <= set((c, s) for c, s, _ in bins)
    blacklist.write_text("# nothing listed\n")
    cfg = FromBedConfig(blacklist=str(blacklist), contigs=["chr3", "chr7", "chr8"])
    build_dataset(genome.fasta, genome.sheet, tmp_path / "empty", cfg, 7, False)
    assert {c for c, _, _ in _bins(tmp_path / "empty", "train")} == {"chr3"}


def test_bgzip_fasta_is_read_and_plain_gzip_refused(genome: Genome, tmp_path: Path) -> None:
    bgzipped = tmp_path / "genome.fa.gz"
    pysam.tabix_compress(str(genome.fasta), str(bgzipped))
    cfg = FromBedConfig(contigs=["chr1", "chr7", "chr8"], test_chroms=["chr8"])
    metadata = build_dataset(bgzipped, genome.sheet, tmp_path / "out", cfg, 7, False)
    assert metadata["genome"]["fasta_md5"] == file_md5(bgzipped)
    assert metadata["contigs_binned"] == ["chr1", "chr7", "chr8"]
    gzipped = tmp_path / "plain.fa.gz"
    gzipped.write_bytes(gzip.compress(genome.fasta.read_bytes()))
    with pytest.raises(DataError, match="plain gzip.*bgzip"):
        build_dataset(gzipped, genome.sheet, tmp_path / "out2", cfg, 7, False)
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("sheet", "bed", "message"),
    [
        ("a\tpeaks.bed\nb\tmissing.bed\n", "", r"peaks.tsv line 2: peak file .*missing.bed"),
        ("a\tpeaks.bed\na\tpeaks.bed\n", "", r"peaks.tsv line 2: target 'a' is listed twice"),
        ("a peaks.bed\n", "", r"peaks.tsv line 1: expected name<TAB>peak file"),
        ("a\tpeaks.bed\n", "chr1\t10\t20\nchr1\tten\t20\n", r"peaks.bed line 2: start 'ten'"),
        ("a\tpeaks.bed\n", "#c\nchr1\t50\t20\n", r"peaks.bed line 2: interval chr1:50-20"),
        ("a\tpeaks.bed\n", "chrX\t10\t20\n", r"peaks.bed line 1: contig 'chrX' is not in"),
        ("a\tpeaks.bed\n", "chr1\t10\n", r"peaks.bed line 1: 2 column\(s\)"),
        ("a\tpeaks.bed\n", "chr1\t59990\t60010\n", r"line 1: .*<= 60000 \(the contig's"),
    ],
)
def test_bad_inputs_name_file_and_line(
    genome: Genome, tmp_path: Path, sheet: str, bed: str, message: str
) -> None:
    (tmp_path / "peaks.tsv").write_text(sheet)
    (tmp_path / "peaks.bed").write_text(bed)
    with pytest.raises(DataError, match=message):
        build_dataset(genome.fasta, tmp_path / "peaks.tsv", tmp_path / "out", FromBedConfig(), 7)
    assert not (tmp_path / "out").exists()


def test_cli_builds_and_reports_errors(
    genome: Genome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    args = ["data", "from-bed", "--fasta", str(genome.fasta), "--peaks", str(genome.sheet)]
    overrides = ["-S", "from_bed.window=400", "-S", "from_bed.negatives=random"]
    assert main([*overrides, *args, "--out", str(out), "--build", "synth1", "--quiet"]) == 0
    assert "3 targets x 400-bp windows" in capsys.readouterr().out
    metadata = json.loads((out / DATA_METADATA_FILE).read_text())
    assert metadata["genome"]["build"] == "synth1"
    assert metadata["settings"]["negatives"] == "random" and metadata["seq_len"] == 400
    with open_split(out / "valid.mat", "valid") as reader:
        assert reader.seq_len == 400
    assert main(["-S", "from_bed.window=401", *args, "--out", str(out)]) == 2
    assert "window (401)" in capsys.readouterr().err
    # No setting writes data without reverse-complement halves: the data gate would refuse it.
    assert main(["-S", "from_bed.rc_halves=false", *args, "--out", str(out)]) == 2
    assert "rc_halves" in capsys.readouterr().err
    assert main([*args[:3], str(tmp_path / "none.fa"), *args[4:], "--out", str(out)]) == 1
    assert "none.fa: genome FASTA not found" in capsys.readouterr().err


@pytest.mark.slow
def test_model_trained_on_planted_motif_peaks_reaches_auroc_above_0_9(tmp_path: Path) -> None:
    """Peaks around planted motifs -> from-bed (300-bp windows) -> a small DanQ trained for a
    few epochs -> held-out (test: chr8, chr9) AUROC > 0.9 on both single-motif targets."""
    import keras

    from danq.config import DropoutConfig, ModelConfig, TrainConfig
    from danq.evaluation.metrics import per_target_auroc_aupr
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq, compile_danq
    from danq.predict import score_with_reverse_complement

    genome = write_genome(tmp_path / "genome", contig_length=200_000, seed=3)
    build_dataset(
        genome.fasta, genome.sheet, tmp_path / "data", FromBedConfig(window=300), 7, False
    )
    x_train, y_train = _read(tmp_path / "data", "train")
    x_valid, y_valid = _read(tmp_path / "data", "valid")
    x_test, y_test = _read(tmp_path / "data", "test")
    model_cfg = ModelConfig(
        preset="custom", conv_filters=16, conv_width=12, pool_size=10, lstm_units=8, dense_units=16
    )
    policy = dropout_policy(DropoutConfig(), "baseline")
    model = build_danq(model_cfg, 300, y_train.shape[1], policy, seed=5)
    compile_danq(model, TrainConfig(learning_rate=0.005), jit_compile=False, auroc=False)
    model.fit(
        x_train.astype(np.float32),
        y_train.astype(np.float32),
        batch_size=64,
        epochs=15,
        validation_data=(x_valid.astype(np.float32), y_valid.astype(np.float32)),
        callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)],
        verbose=0,
    )
    n = len(x_test) // 2
    scores = score_with_reverse_complement(model, x_test[:n])
    auroc, _ = per_target_auroc_aupr(y_test[:n], scores)
    assert auroc[0] > 0.9 and auroc[1] > 0.9, auroc  # motif_a, motif_b; auroc[2]: noise


@pytest.mark.slow
def test_dvc_example_builds_validates_and_rebuilds_when_a_peak_file_changes(
    tmp_path: Path,
) -> None:
    """examples/own-data as its README says: add-stages.sh, then `dvc repro` builds data/ and
    passes the gate; a changed peak file makes the data stage stale."""
    example = tmp_path / "own-data"
    shutil.copytree(REPO / "examples" / "own-data", example)
    made = write_genome(tmp_path / "made", contig_length=60_000)
    (example / "genome").mkdir()
    pysam.tabix_compress(str(made.fasta), str(example / "genome" / "genome.fa.gz"))
    for path in made.peaks.values():
        shutil.copy(path, example / "peaks" / path.name)
    sheet = (example / "peaks" / "peaks.tsv").read_text()
    (example / "peaks" / "peaks.tsv").write_text(
        sheet + "".join(f"{name}\t{name}.narrowPeak\n" for name in made.peaks)
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def dvc(*args: str) -> str:
        done = subprocess.run(
            ["dvc", *args], cwd=example, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    dvc("init", "--no-scm")
    added = subprocess.run(
        ["bash", "add-stages.sh"], cwd=example, env=env, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr
    dvc("repro")
    report = json.loads((example / "build" / "validation" / "report.json").read_text())
    assert report["passed"]
    metadata = json.loads((example / "data" / DATA_METADATA_FILE).read_text())
    assert [t["name"] for t in metadata["targets"]] == list(made.peaks)
    assert json.loads(dvc("status", "--json")) == {}
    peak_file = example / "peaks" / "noise.narrowPeak"
    peak_file.write_text("\n".join(peak_file.read_text().splitlines()[:-1]) + "\n")
    assert "data" in json.loads(dvc("status", "--json"))
