"""The PWM-scan oracle: a ceiling that solves the planted grammar, and only for synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from danq.artifacts import DATA_METADATA_FILE, METRICS_FILE, ORACLE_DIR, PER_TARGET_FILE
from danq.cli.main import main
from danq.config import SynthConfig
from danq.data.oracle import oracle_metrics
from danq.data.synth import write_dataset
from danq.errors import DataError
from danq.io.deepsea import open_split, write_split

# Enough test sequences for AUROCs to within a few hundredths; only the test split is written.
ORACLE_SYNTH = dict(n_train=10, n_valid=10, n_test=800, seq_len=400, chunk_size=400)
# Least for count: presence of its motif already ranks two copies above none.
GRAMMAR_GAIN = {"central": 0.05, "pair": 0.05, "order": 0.05, "logic": 0.05, "count": 0.01}


@pytest.fixture(scope="module")
def synth_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oracle_data")
    return write_dataset(out, SynthConfig(**ORACLE_SYNTH), seed=11, splits=("test",))


@pytest.fixture(scope="module")
def scored(synth_test: Path) -> tuple[dict, str]:
    return oracle_metrics(str(synth_test))


def test_oracle_solves_motif_targets_and_not_noise(scored: tuple[dict, str]) -> None:
    metrics, table = scored
    rows = [line.split("\t") for line in table.strip().split("\n")[1:]]
    auroc = {name: float(value) for _, name, _, _, value, _ in rows}
    motif_targets = {n: a for n, a in auroc.items() if not n.startswith("noise")}
    assert len(motif_targets) == 14
    assert min(motif_targets.values()) > 0.75, motif_targets
    assert np.mean(list(motif_targets.values())) > 0.88
    assert [a for n, a in auroc.items() if n.startswith("noise")] == [0.5, 0.5]
    assert metrics["categories"]["noise"]["auroc"] == 0.5
    assert metrics["overall"]["n_scoreable"] == 16 and metrics["n_test"] == 800


def test_grammar_beats_motif_presence_alone(scored: tuple[dict, str]) -> None:
    # The decoys make presence a poor guide to the grammar targets; the rules recover them.
    metrics, _ = scored
    presence = metrics["presence_only"]["categories"]
    for category, least in GRAMMAR_GAIN.items():
        gain = metrics["categories"][category]["auroc"] - presence[category]["auroc"]
        assert gain > least, (category, gain)
    assert metrics["categories"]["single"]["auroc"] == pytest.approx(presence["single"]["auroc"])


def test_cli_writes_an_evaluation_shaped_report(
    synth_test: Path, scored: tuple[dict, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "build"
    code = main(["-S", f"paths.work_dir={work}", "data", "oracle", "--data", str(synth_test)])
    assert code == 0
    out = work / ORACLE_DIR
    written = json.loads((out / METRICS_FILE).read_text())
    assert written["split"] == "test" and written["scan"]["strands"] == "both"
    assert set(written["overall"]) == {"auroc", "aupr", "n_scoreable", "n_skipped", "skipped"}
    assert set(written["categories"]) == {
        "single", "central", "pair", "order", "count", "logic", "noise"
    }  # fmt: skip
    assert written["overall"]["auroc"] == pytest.approx(scored[0]["overall"]["auroc"])
    assert (out / PER_TARGET_FILE).read_text() == scored[1]
    assert "test macro AUROC" in capsys.readouterr().out


def test_refuses_data_without_synth_metadata(synth_test: Path, tmp_path: Path) -> None:
    with open_split(synth_test / "test.mat") as reader:
        x, y = reader.read(0, 20)
    plain = tmp_path / "deepsea_like"
    plain.mkdir()
    write_split(plain / "test.mat", "test", x, y)
    with pytest.raises(DataError, match=rf"deepsea_like/{DATA_METADATA_FILE}: not found"):
        oracle_metrics(str(plain))
    metadata = json.loads((synth_test / DATA_METADATA_FILE).read_text())
    (plain / DATA_METADATA_FILE).write_text(json.dumps({**metadata, "generator": "someone"}))
    with pytest.raises(DataError, match=rf"{DATA_METADATA_FILE}: generator is 'someone'"):
        oracle_metrics(str(plain))
    code = main(["-S", f"paths.work_dir={tmp_path}", "data", "oracle", "--data", str(plain)])
    assert code != 0 and not (tmp_path / ORACLE_DIR).exists()
