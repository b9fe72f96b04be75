"""params.yaml parsing: typed values, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from danq import tracking
from danq.config import MODEL_PRESETS, load_params
from danq.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_parse_with_the_small_preset() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.model.preset == "small"
    # The embedded run's training (README): batch 50, lr 0.002, epochs of 60 steps.
    assert params.train.batch_size == 50
    assert params.train.learning_rate == pytest.approx(2e-3)
    assert params.train.steps_per_epoch == 60
    # 300-bp sequences and room to stop early: both variants stopped early (epochs 96 and 47).
    assert params.synth.seq_len == 300 and params.train.max_epochs == 120
    assert params.train.patience == 5
    assert params.dropout.baseline.pool == 0.2 and params.dropout.baseline.lstm == 0.5
    assert (params.dropout.random_dropout.pool.low, params.dropout.random_dropout.pool.high) == (
        0.1,
        0.3,
    )
    assert (params.dropout.random_dropout.lstm.low, params.dropout.random_dropout.lstm.high) == (
        0.4,
        0.6,
    )


def test_presets_fill_fields_and_explicit_fields_win(tmp_path: Path) -> None:
    params = load_params(tmp_path / "missing.yaml", ["model.preset=danq"])
    assert params.model.conv_filters == MODEL_PRESETS["danq"]["conv_filters"] == 320
    params = load_params(tmp_path / "missing.yaml", ["model.preset=danq", "model.lstm_units=7"])
    assert params.model.lstm_units == 7 and params.model.dense_units == 925


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("model.conv_filters=0", "model.conv_filters", "greater than 0"),
        ("model.kernel=3", "model.kernel", "unknown key"),
        ("dropout.baseline.pool=-0.1", "dropout.baseline.pool", "greater than or equal"),
        ("dropout.baseline.lstm=1.0", "dropout.baseline.lstm", "less than 1"),
        (
            "dropout.random_dropout.pool={low: 0.3, high: 0.1}",
            "dropout.random_dropout.pool",
            "must not exceed",
        ),
        ("dropout.random_dropout.redraw=hourly", "dropout.random_dropout.redraw", "run"),
        ("train.batch_size=0", "train.batch_size", "greater than 0"),
        ("validate.max_n_share=2", "validate.max_n_share", "less than or equal"),
        ("prepare.halves=reverse", "prepare.halves", "both"),
        ("bogus=1", "bogus", "unknown key"),
    ],
)
def test_bad_settings_fail_naming_the_key(
    tmp_path: Path, override: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params.yaml", [override])
    assert f"{key}:" in str(err.value) and words in str(err.value)


def test_pool_larger_than_the_sequence_names_the_key() -> None:
    params = load_params(REPO / "params.yaml", ["model.pool_size=2000"])
    with pytest.raises(ConfigError, match="model.pool_size"):
        params.model.check_fits(1000)


def test_invalid_yaml_and_bad_override_syntax(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_params(REPO / "params.yaml", ["train.batch_size"])


def test_tracking_uri_falls_back_to_env_then_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    params = load_params(REPO / "params.yaml")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(params.mlflow) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri(params.mlflow) == "http://127.0.0.1:5000"


def test_jaspar_init_modes_and_rmsprop_epsilon(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    jaspar = load_params(missing, ["model.preset=danq_jaspar"]).model
    assert (jaspar.jaspar_init, jaspar.jaspar_release) == ("original", "JASPAR2016")
    # The former boolean still parses: true was the sampled initialisation.
    assert load_params(missing, ["model.jaspar_init=true"]).model.jaspar_init == "sample"
    assert load_params(missing).model.jaspar_init == "none"
    assert load_params(missing).train.epsilon == pytest.approx(1e-7)
    assert load_params(missing, ["train.epsilon=1e-6"]).train.epsilon == pytest.approx(1e-6)
    for override, key in (
        ("model.jaspar_init=all", "model.jaspar_init"),
        ("train.epsilon=0", "train.epsilon"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_params(missing, [override])


def test_seeds_and_bootstrap_blocks_settings(tmp_path: Path) -> None:
    params = load_params(tmp_path / "absent.yaml")
    assert params.train.seeds == 1  # one run per variant unless asked
    assert params.promote.bootstrap_block_rows == "auto"
    assert (
        load_params(
            tmp_path / "absent.yaml", ["promote.bootstrap_block_rows=25"]
        ).promote.bootstrap_block_rows
        == 25
    )
    for bad in (
        "train.seeds=0",
        "promote.bootstrap_block_rows=0",
        "promote.bootstrap_block_rows=big",
    ):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_params(tmp_path / "absent.yaml", [bad])


def test_auto_blocks_are_one_row_on_synthetic_data_and_deepsea_blocks_otherwise(
    tmp_path: Path,
) -> None:
    import json

    from danq.evaluation.resampling import DEEPSEA_BLOCK_ROWS, block_rows

    cfg = load_params(tmp_path / "absent.yaml").promote
    assert block_rows(cfg, None) == DEEPSEA_BLOCK_ROWS == 50
    assert block_rows(cfg, str(tmp_path)) == 50  # no metadata.json: DeepSEA-like data
    (tmp_path / "metadata.json").write_text(json.dumps({"generator": "danq data synth"}))
    assert block_rows(cfg, str(tmp_path)) == 1
    fixed = load_params(tmp_path / "absent.yaml", ["promote.bootstrap_block_rows=7"]).promote
    assert block_rows(fixed, str(tmp_path)) == 7


def test_study_defaults_pair_8_seeds_with_patience_5_and_a_studied_primary_arm() -> None:
    study = load_params(REPO / "params.yaml").study
    assert study.seeds >= 8  # the exact sign-flip test can reach p < 0.05 from 6 seeds
    assert study.patience == 5  # DanQ's and the paper's
    assert study.primary in study.arms and study.primary != "baseline"
    assert study.tolerance == 0.003  # the paper's "within 0.3 %"
    assert study.max_epochs >= 60  # room to stop early: seed 0 stopped at 51 of batch 250
    with pytest.raises(ConfigError, match="study"):
        load_params(REPO / "params.yaml", ["study.arms=[baseline, epoch]"])  # no primary arm


def test_synth_recipe_settings_are_checked() -> None:
    params = load_params(None, ["synth.motif_temperature=0.5", "synth.positive_rate=0.2"])
    assert (params.synth.motif_temperature, params.synth.positive_rate) == (0.5, 0.2)
    for bad in ("synth.motif_temperature=0", "synth.motif_temperature=1.5", "synth.decoy_rate=0.6"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_params(None, [bad])
