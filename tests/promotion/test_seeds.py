"""train.seeds = 2 through the command line: train, evaluate, report and promote on tiny data.

Each variant trains two seeds; evaluation picks each variant's best seed on validation; the
report and promotion compare the variants over seeds, paired by seed index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from danq import tracking
from danq.cli.main import main

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)


@pytest.mark.slow  # four trainings of one epoch, their evaluations, report and promotion
def test_two_seeds_per_variant_from_train_to_promote(
    tiny_data: Path, tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "data_dir": str(tiny_data),
                    "work_dir": str(tmp_path / "build"),
                    "metrics_dir": str(tmp_path / "metrics"),
                },
                "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
                "model": TINY_MODEL,
                "train": {"batch_size": 40, "max_epochs": 1, "shuffle_buffer": 100, "seeds": 2},
                "evaluate": {"batch_size": 100},
                "promote": {
                    "min_macro_auroc": 0.0,
                    "min_macro_aupr": 0.0,
                    "bootstrap_samples": 20,
                    "bootstrap_min_class_blocks": 2,
                },
            }
        )
    )
    danq = ["--params", str(params)]
    models = tmp_path / "build" / "models"
    for variant in ("baseline", "random_dropout"):
        assert main([*danq, "train", "--variant", variant, "--shards", str(tiny_shards)]) == 0
        index = json.loads((models / variant / "seeds.json").read_text())
        assert [(s["seed"], s["folder"]) for s in index["seeds"]] == [
            (1234, "seed-0"),
            (1235, "seed-1"),
        ]
        runs = [
            json.loads((models / variant / f"seed-{i}" / "run.json").read_text()) for i in (0, 1)
        ]
        assert [r["settings"]["train.seed"] for r in runs] == [1234, 1235]
        assert runs[0]["run_id"] != runs[1]["run_id"]
    out = capsys.readouterr().out
    assert "baseline seed 1235: best epoch 1" in out

    shards = ["--shards", str(tiny_shards / "test"), "--valid-shards", str(tiny_shards / "valid")]
    assert main([*danq, "evaluate", *shards]) == 0
    out = capsys.readouterr().out
    assert "(selected on validation)" in out
    for variant in ("baseline", "random_dropout"):
        metrics = json.loads((tmp_path / "build" / "eval" / variant / "metrics.json").read_text())
        seeds = metrics["seeds"]
        assert [s["seed"] for s in seeds] == [1234, 1235]
        best = max(seeds, key=lambda s: s["valid"]["aupr"])  # promote.metric, on validation
        assert metrics["selected_seed"] == best
        assert metrics["mlflow_run_id"] == best["mlflow_run_id"]
        assert metrics["overall"]["auroc"] == best["test"]["auroc"]  # the selected seed's test
        assert (tmp_path / "build" / "eval" / variant / "seeds" / "seed-1" / "valid").is_dir()

    # The filter report stands for the variant's selected seed: logged to that seed's run.
    (tmp_path / "build" / "shards").symlink_to(tiny_shards)
    explain = [*danq, "-S", "explain_filters.min_sites=1", "explain", "filters"]
    assert main([*explain, "--variant", "baseline"]) == 0
    selected = json.loads((tmp_path / "build" / "eval" / "baseline" / "metrics.json").read_text())
    client = tracking.client(f"sqlite:///{tmp_path}/mlflow.db")
    for seed in selected["seeds"]:
        logged = {
            Path(f.path).name for f in client.list_artifacts(seed["mlflow_run_id"], "explain")
        }
        chosen = seed["seed"] == selected["selected_seed"]["seed"]
        assert ("report.html" in logged) == chosen, seed

    assert main([*danq, "report"]) == 0
    assert (tmp_path / "metrics" / "plots" / "aupr_scatter.csv").exists()
    assert (tmp_path / "metrics" / "baseline.json").exists()
    out = capsys.readouterr().out
    assert "Verdict over 2 seeds (paired by seed), random dropout minus baseline" in out
    assert "Verdict on the methods" not in out  # the seeds measured the training noise
    comparison = json.loads((tmp_path / "build" / "report" / "comparison.json").read_text())
    assert comparison["seed_delta"]["valid"]["aupr"]["n_seeds"] == 2
    assert comparison["variants"]["baseline"]["seeds"] == 2

    assert main([*danq, "promote", "--shards", str(tiny_shards / "valid")]) == 0
    blessing = json.loads((tmp_path / "build" / "promote" / "blessing.json").read_text())
    [paired] = blessing["seed_comparisons"]
    assert (paired["a"], paired["b"], paired["n_seeds"]) == ("baseline", "random_dropout", 2)
    assert blessing["decision"] == "promote"
    # The champion is the better variant's (by mean validation AUPR over seeds) best seed.
    per_variant = {"baseline": paired["per_seed_a"], "random_dropout": paired["per_seed_b"]}
    better = max(per_variant, key=lambda v: sum(per_variant[v]))  # ties: baseline, listed first
    assert blessing["chosen"] == better
    chosen = next(c for c in blessing["candidates"] if c["variant"] == better)
    chosen_eval = json.loads((tmp_path / "build" / "eval" / better / "metrics.json").read_text())
    assert chosen["seed"] == chosen_eval["selected_seed"]["seed"]
    assert chosen["run_id"] == chosen_eval["selected_seed"]["mlflow_run_id"]

    # Again, now against a champion: a sqlite: store read directly gives the champion's
    # version as an int, and the compare-and-set must still see the champion it scored.
    assert main([*danq, "promote", "--shards", str(tiny_shards / "valid")]) == 0
    again = json.loads((tmp_path / "build" / "promote" / "blessing.json").read_text())
    assert again["champion"]["version"] in {"1", "2"}  # a string, as the aliases hold it
    assert "champion of" not in capsys.readouterr().err
