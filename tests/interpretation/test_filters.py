"""`danq explain filters`: filters -> PFMs (DanQ/Basset sites), TOMTOM vs JASPAR, the report."""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import keras
import numpy as np
import pytest

from danq.cli.main import main
from danq.config import DropoutConfig, ModelConfig, TrainConfig
from danq.data.encoding import codes_to_onehot, encode
from danq.data.jaspar import motifs_by_id
from danq.data.synth import generate_chunk
from danq.interpretation.filters import MOTIF_CONV_LAYER, scan_filters, weights_to_pfm
from danq.interpretation.motifs import match_jaspar
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq, jaspar_filter_weights
from tests.interpretation.conftest import SYNTH, SYNTH_SEED, SynthModel

RELEASE = "JASPAR2024"
TINY = ModelConfig(
    preset="custom", conv_filters=8, conv_width=6, pool_size=10, lstm_units=4, dense_units=8
)


def _model(config: ModelConfig, seq_len: int, n_targets: int, seed: int = 0) -> keras.Model:
    return build_danq(config, seq_len, n_targets, dropout_policy(DropoutConfig(), "baseline"), seed)


def _batches(codes: np.ndarray, batch_size: int):
    return lambda: (codes[i : i + batch_size] for i in range(0, len(codes), batch_size))


def test_jaspar_initialised_filters_match_their_own_motif_first() -> None:
    """Must-show: before training, every DanQ-JASPAR motif filter's top TOMTOM hit is the
    JASPAR matrix it was initialised with."""
    config = ModelConfig(
        preset="custom",
        conv_filters=40,
        conv_width=20,
        pool_size=10,
        lstm_units=4,
        dense_units=8,
        jaspar_init="sample",
        jaspar_release=RELEASE,
    )
    model = _model(config, 100, 2, seed=5)
    kernel = model.get_layer(MOTIF_CONV_LAYER).get_weights()[0]
    expected_kernel, _, placed = jaspar_filter_weights(40, 20, RELEASE, 5, "sample")
    np.testing.assert_allclose(kernel, expected_kernel)  # the placement recorded is the model's
    assert len(placed) == 20

    pfms = weights_to_pfm(kernel)
    matches = match_jaspar(pfms, RELEASE, compared=[True] * 40, max_q=0.05)

    for motif in placed:
        best = matches[motif.filter_index].matches[0]
        assert best.jaspar_id == motif.motif_id, (motif, matches[motif.filter_index].matches)
        assert best.q_value < 1e-6


def test_weights_to_pfm_inverts_jaspar_initialisation() -> None:
    [(_, _, pfm)] = motifs_by_id(["MA0139.2"], RELEASE)
    kernel = np.full((len(pfm) + 4, 4, 1), 0.0)
    kernel[2 : 2 + len(pfm), :, 0] = pfm - 0.25
    [recovered] = weights_to_pfm(kernel)
    np.testing.assert_allclose(recovered[2 : 2 + len(pfm)], pfm, atol=1e-12)
    np.testing.assert_allclose(recovered[:2], 0.25)


def test_sites_of_a_kmer_filter_give_the_kmer_exactly() -> None:
    """A filter that fires only on GATTACA, planted at known places, yields GATTACA's PFM, one
    site per planted copy; a filter that never fires has none."""
    kmer = "GATTACA"
    config = TINY.model_copy(update={"conv_filters": 2, "conv_width": len(kmer)})
    model = _model(config, 60, 1)
    kernel = np.zeros((len(kmer), 4, 2), dtype=np.float32)
    kernel[:, :, 0] = codes_to_onehot(encode(kmer))
    kernel[:, :, 1] = -1.0  # ReLU(-7 + 0) = 0 everywhere: a dead filter
    # Activation 0.5 on the k-mer, at most -0.5 (ReLU: 0) on any other window.
    bias = np.array([-(len(kmer) - 0.5), 0.0], dtype=np.float32)
    model.get_layer(MOTIF_CONV_LAYER).set_weights([kernel, bias])

    planted = {0: [3, 40], 1: [10], 3: [0, 20, 53], 4: []}
    sequences = []
    for row in range(5):
        text = ["C"] * 60  # shares no base with GATTACA's strongest columns: no partial sites
        for start in planted.get(row, []):
            text[start : start + len(kmer)] = kmer
        sequences.append(encode("".join(text)))
    codes = np.stack(sequences)

    scan = scan_filters(model, _batches(codes, 2), threshold=0.5, max_sequences=100)

    assert scan.n_sequences == 5
    assert scan.n_sites.tolist() == [6, 0]
    np.testing.assert_array_equal(scan.counts[0], 6 * codes_to_onehot(encode(kmer)))
    np.testing.assert_array_equal(scan.pfms()[0], codes_to_onehot(encode(kmer)))
    np.testing.assert_array_equal(scan.pfms()[1], 0.25)
    assert scan.max_activation[0] == pytest.approx(0.5)

    limited = scan_filters(model, _batches(codes, 2), threshold=0.5, max_sequences=2)
    assert limited.n_sequences == 2 and limited.n_sites[0] == 3


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.links.append((tag, name, value))
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag == "script":
            self.links.append((tag, "script", dict(attrs).get("src") or "inline"))


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    import json

    n_targets = len(json.loads((tiny_data / "metadata.json").read_text())["targets"])
    config = TINY.model_copy(update={"jaspar_init": "sample", "conv_filters": 12, "conv_width": 20})
    model = _model(config, 200, n_targets, seed=1)
    compile_danq(model, TrainConfig(), auroc=False)
    path = tmp_path_factory.mktemp("explain_model") / "model.keras"
    model.save(path)
    return path


def test_explain_filters_writes_a_self_contained_report(
    tiny_model_file: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "explain"
    overrides = ["-S", "explain_filters.min_sites=1", "-S", "explain_filters.max_sequences=60"]
    argv = [*overrides, "explain", "filters", "--model", str(tiny_model_file)]
    assert main([*argv, "--shards", str(tiny_shards / "test"), "--out", str(out)]) == 0

    page = (out / "report.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.images, "the report shows logos"
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert not [link for link in parser.links if not link[2].startswith("data:")]
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|(src|href)=\"//|<script|<link|@import|url\(", text)

    with open(out / "matches.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {row["filter"] for row in rows} == {f"filter_{i}" for i in range(12)}
    compared = [row for row in rows if row["jaspar_id"]]
    assert compared and all(0.0 <= float(row["q_value"]) <= 1.0 for row in compared)

    from memelite.io import read_meme

    motifs = read_meme(str(out / "filters.meme"))
    assert len(motifs) == 12
    assert all(np.allclose(m.sum(axis=0), 1.0, atol=1e-5) for m in motifs.values())
    markdown = (out / "report.md").read_text()
    for logo in re.findall(r"\]\((logos/[^)]+)\)", markdown):
        assert (out / logo).is_file()


def test_explain_filters_reads_fasta_and_refuses_unclear_input(
    tiny_model_file: Path, tmp_path: Path
) -> None:
    fasta = tmp_path / "seqs.fa"
    rng = np.random.default_rng(0)
    fasta.write_text(
        "".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 250))}\n" for i in range(30))
    )
    out = tmp_path / "explain"
    base = ["-S", "explain_filters.min_sites=1", "explain", "filters"]
    argv = [*base, "--model", str(tiny_model_file), "--out", str(out)]
    assert main([*argv, "--input", str(fasta)]) == 0
    assert (out / "summary.json").is_file()
    assert main([*argv, "--input", str(fasta), "--shards", str(tmp_path)]) != 0
    assert main([*base, "--model", str(tiny_model_file), "--input", str(fasta)]) != 0


@pytest.mark.slow
def test_filters_of_a_trained_model_recover_planted_motifs(synth_model: SynthModel) -> None:
    """Must-show: at least half of the planted motifs are matched by some filter at q < 0.05."""
    model, found, pfms, rules = (
        synth_model.model,
        synth_model.found,
        synth_model.pfms,
        synth_model.rules,
    )
    held, _ = generate_chunk(SYNTH, pfms, rules, 1000, np.random.default_rng(SYNTH_SEED + 100))

    scan = scan_filters(model, _batches(held, 200), threshold=0.5, max_sequences=1000)
    matches = match_jaspar(
        scan.pfms(), RELEASE, compared=[n >= 10 for n in scan.n_sites], max_q=0.05
    )

    # Any version of the matrix: the release's CORE set holds its latest (MA0139.2 for the
    # planted MA0139.1).
    planted = {motif_id.split(".")[0] for motif_id, _, _ in found}
    recovered = planted & {mid.split(".")[0] for m in matches for mid in m.significant}
    print(f"recovered {len(recovered)} of {len(planted)} planted motifs: {sorted(recovered)}")
    assert len(recovered) >= len(planted) / 2


def test_report_counts_matching_filters_and_recovered_planted_motifs(tmp_path: Path) -> None:
    """The comparison report's filter section: a planted matrix counts as recovered when a
    filter matches any version of it at q < max_q."""
    from danq import artifacts
    from danq.evaluation.report import filter_lines, read_filter_matches

    data = tmp_path / "data"
    data.mkdir()
    planted = [
        {"id": "MA0139.1", "name": "CTCF", "length": 19},
        {"id": "MA0035.4", "name": "GATA1", "length": 11},
    ]
    artifacts.write_json(data / "metadata.json", {"motifs": planted})
    summary = {"n_filters": 8, "n_compared": 6, "n_matched": 3, "max_q": 0.05}
    artifacts.write_json(
        tmp_path / "explain" / "baseline" / "summary.json",
        {**summary, "matched_ids": {"MA0139.2": 1e-6, "MA0140.3": 0.01}},
    )
    filters = read_filter_matches(
        str(tmp_path / "explain"), ["baseline", "random_dropout"], str(data)
    )

    assert filters is not None
    assert list(filters["variants"]) == ["baseline"]  # random_dropout has no report
    assert filters["variants"]["baseline"]["planted_recovered"] == ["MA0139.1"]
    assert "| 8 | 6 | 3 (q < 0.05) | 1 of 2: MA0139.1 (CTCF) |" in filter_lines(filters)[-1]
    assert read_filter_matches(str(tmp_path / "none"), ["baseline"], str(data)) is None


def test_explain_filters_of_a_variant_logs_the_report_to_its_training_run(
    tiny_model_file: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    import shutil

    import mlflow

    from danq import artifacts

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.create_experiment("danq", artifact_location=str(tmp_path / "mlruns"))
    run_id = client.create_run(experiment).info.run_id
    work = tmp_path / "build"
    shutil.copytree(tiny_shards / "test", work / "shards" / "test")
    (work / "models" / "baseline").mkdir(parents=True)
    shutil.copy(tiny_model_file, work / "models" / "baseline" / "model.keras")
    artifacts.write_json(work / "models" / "baseline" / "run.json", {"run_id": run_id})
    settings = [f"paths.work_dir={work}", f"mlflow.tracking_uri={tracking_uri}"]
    argv = [arg for s in settings for arg in ("-S", s)]

    assert main([*argv, "explain", "filters", "--variant", "baseline"]) == 0

    assert (work / "explain" / "baseline" / "report.html").is_file()
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "explain")}
    assert {"report.html", "report.md", "matches.tsv", "filters.meme", "summary.json"} <= logged
