"""The MLflow model that training logs (tracking.log_keras_model): it carries the danq code
that loading needs, its requirements name only published packages pinned to the versions in
use (danq is not on PyPI: a `danq` requirement invites dependency confusion), and it loads
where danq is not installed as well as through danq's own verified loader."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from danq.model import mlflow_flavor

SOURCE_ROOT = Path(mlflow_flavor.__file__).resolve().parents[2]
# A fixed input: random bases, one-hot, as the model sees sequences.
FIXED_INPUT = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (5, 60))]

# Run where danq is not installed: the entries of sys.path that hold a danq package (the
# editable install's src/) are dropped before anything is imported; writes what loaded to a
# file (stdout carries Keras' progress bars).
LOAD_WITHOUT_DANQ = """
import json, os, sys
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "danq"))]
import mlflow
import numpy as np

uri, input_file, output_file = sys.argv[1:]
x = np.load(input_file)
served = mlflow.pyfunc.load_model(uri).predict(x)
keras_model = mlflow.keras.load_model(uri).predict(x, verbose=0)
import danq
open(output_file, "w").write(json.dumps({
    "danq_file": danq.__file__,
    "danq_modules": sorted(m for m in sys.modules if m.split(".")[0] == "danq"),
    "pyfunc": np.asarray(served).tolist(),
    "keras": np.asarray(keras_model).tolist(),
}))
"""


@dataclass(frozen=True)
class LoggedModel:
    tracking_uri: str
    uri: str
    files: Path  # the logged model's artifacts, downloaded


@pytest.fixture(scope="module")
def logged(model: Any, tmp_path_factory: pytest.TempPathFactory) -> LoggedModel:
    """model logged as training logs it, in a SQLite store of its own, and downloaded."""
    import mlflow

    from danq import tracking

    root = tmp_path_factory.mktemp("logged")
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    client = tracking.client(tracking_uri)
    experiment = client.create_experiment("logged", artifact_location=(root / "art").as_uri())
    with tracking.using(tracking_uri), mlflow.start_run(experiment_id=experiment):
        uri = tracking.log_keras_model(model, FIXED_INPUT[:2], ["CTCF", "GATA1", "noise"])
        files = mlflow.artifacts.download_artifacts(uri, dst_path=str(root / "download"))
    return LoggedModel(tracking_uri, uri, Path(files))


def requirement_pins(text: str) -> dict[str, str]:
    pins = dict(line.split("==") for line in text.split())
    assert len(pins) == len(text.split()), f"unpinned requirements in {text!r}"
    return pins


def test_requirements_are_published_packages_pinned_to_the_versions_in_use(
    logged: LoggedModel,
) -> None:
    pins = requirement_pins((logged.files / "requirements.txt").read_text())
    assert pins == {
        name: metadata.version(name) for name in ("mlflow", *mlflow_flavor.REQUIREMENTS)
    }
    conda = yaml.safe_load((logged.files / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert requirement_pins("\n".join(pip_section)) == pins
    for name in ("requirements.txt", "conda.yaml", "python_env.yaml", "MLmodel"):
        assert "danq==" not in (logged.files / name).read_text(), name
    assert "danq" not in (logged.files / "requirements.txt").read_text().lower()


def test_the_model_carries_the_code_that_loads_it(logged: LoggedModel) -> None:
    code = logged.files / mlflow_flavor.CODE_DIR
    vendored = sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file())
    assert vendored == sorted(mlflow_flavor.VENDORED_MODULES)
    for module in vendored:
        assert (code / module).read_bytes() == (SOURCE_ROOT / module).read_bytes(), module
    pyfunc = yaml.safe_load((logged.files / "MLmodel").read_text())["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "danq.model.mlflow_flavor"
    assert pyfunc["code"] == mlflow_flavor.CODE_DIR


def test_the_vendored_code_imports_only_what_the_requirements_install() -> None:
    """Every top-level import of the vendored modules is the standard library, danq (vendored),
    mlflow (pinned by MLflow itself) or a distribution named in REQUIREMENTS."""
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    imported: set[str] = set()
    for module in mlflow_flavor.VENDORED_MODULES:
        for node in ast.walk(ast.parse((SOURCE_ROOT / module).read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "danq", "mlflow"}
    assert third_party == {"keras", "numpy", "pydantic", "yaml"}
    required = set(mlflow_flavor.REQUIREMENTS)
    for name in third_party:
        assert required & set(distributions[name]), f"{name} is imported but not required"


def test_it_loads_where_danq_is_not_installed_with_the_same_predictions(
    logged: LoggedModel, model: Any, tmp_path: Path
) -> None:
    """mlflow.pyfunc.load_model (what `mlflow models serve` uses) picks up the vendored code
    on its own; mlflow.keras.load_model then finds the layer it registered."""
    input_file, output_file = tmp_path / "x.npy", tmp_path / "loaded.json"
    np.save(input_file, FIXED_INPUT)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_DANQ, logged.uri, str(input_file), str(output_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": logged.tracking_uri, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(output_file.read_text())
    assert Path(loaded["danq_file"]).parts[-3:] == (mlflow_flavor.CODE_DIR, "danq", "__init__.py")
    assert not Path(loaded["danq_file"]).is_relative_to(SOURCE_ROOT)
    assert loaded["danq_modules"] == sorted(
        ".".join(Path(m).with_suffix("").parts).removesuffix(".__init__")
        for m in mlflow_flavor.VENDORED_MODULES
    )
    expected = model.predict(FIXED_INPUT, verbose=0)
    np.testing.assert_allclose(loaded["pyfunc"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded["keras"], expected, rtol=1e-5, atol=1e-6)


def test_danq_loads_it_verified_against_the_recorded_sha256(
    logged: LoggedModel, model: Any
) -> None:
    from danq.model.integrity import sha256_file
    from danq.model.loading import load_verified_model

    verified = load_verified_model(logged.uri, logged.tracking_uri)
    assert verified.verified
    assert verified.sha256 == sha256_file(logged.files / "data" / "model.keras")
    np.testing.assert_allclose(
        verified.model.predict(FIXED_INPUT, verbose=0), model.predict(FIXED_INPUT, verbose=0)
    )
