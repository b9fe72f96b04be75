"""How danq models are saved as MLflow models: MLflow's keras flavor plus the code that
loading the model needs, so that the model loads where danq is not installed
(mlflow.pyfunc.load_model, `mlflow models serve`) and its requirements name only published
packages (danq is not on PyPI: a `danq` requirement would install whatever someone published
under that name).

Keras finds a custom layer only once its class is registered, that is once its module was
imported, and mlflow.keras's pyfunc loader imports nothing of the model's own. So
`save_model` writes the keras flavor as mlflow.keras does (data/model.keras: what danq's own
loaders read and checksum), copies the modules that define RandomRateDropout into the
model's code/ folder, and names this module as the pyfunc loader: MLflow puts code/ on
sys.path and calls `_load_pyfunc`, which registers the layer and hands over to mlflow.keras.

This module is itself vendored: at module level it imports the standard library only.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

# The folder of a model that holds its code (the pyfunc flavor's `code`, MLflow's name).
CODE_DIR = "code"
# Every danq module that loading executes, as paths under src/: danq.model.dropout (the
# layer), what it imports (danq.config, danq.errors), the packages above them and this
# loader. Not the whole package: its ~100 modules (CLI, training, data readers) are not
# needed to load a model, and every vendored file is code that runs where the model is served.
VENDORED_MODULES = (
    "danq/__init__.py",
    "danq/errors.py",
    "danq/config.py",
    "danq/model/__init__.py",
    "danq/model/dropout.py",
    "danq/model/mlflow_flavor.py",
)
# Distributions that loading imports besides the standard library, MLflow (which adds its
# own pin) and the vendored code: Keras with its TensorFlow backend, numpy (dropout), pydantic
# and PyYAML (config). All on PyPI.
REQUIREMENTS = ("tensorflow", "keras", "numpy", "pydantic", "PyYAML")


def pinned_requirements() -> list[str]:
    """REQUIREMENTS pinned to the versions installed here, the ones the model was made with."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def vendor_code(model_dir: Path) -> None:
    """Copy VENDORED_MODULES into model_dir/CODE_DIR, keeping their package layout."""
    source_root = Path(__file__).resolve().parents[2]  # the folder that holds danq/
    for module in VENDORED_MODULES:
        target = model_dir / CODE_DIR / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_root / module, target)


def save_model(model: Any, path: str, mlflow_model: Any, **kwargs: Any) -> None:
    """mlflow.keras.save_model, then the vendored code and this module as the pyfunc loader.
    mlflow.models.Model.log calls it as a flavor's save_model; kwargs go to mlflow.keras."""
    import mlflow.keras
    from mlflow import pyfunc
    from mlflow.models.model import MLMODEL_FILE_NAME

    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    vendor_code(Path(path))
    env = mlflow_model.flavors[pyfunc.FLAVOR_NAME][pyfunc.ENV]
    pyfunc.add_to_model(
        mlflow_model,
        loader_module=__name__,
        code=CODE_DIR,
        conda_env=env["conda"],
        python_env=env["virtualenv"],
    )
    mlflow_model.save(str(Path(path, MLMODEL_FILE_NAME)))


def _load_pyfunc(path: str) -> Any:
    """The pyfunc loader MLflow calls (the MLmodel's loader_module is this module)."""
    import mlflow.keras

    import danq.model.dropout  # noqa: F401  registers RandomRateDropout with Keras

    return mlflow.keras._load_pyfunc(path)
