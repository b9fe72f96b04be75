"""Quiet TensorFlow, absl and Keras by default, so a command prints only its own lines.

Two sources of noise need two remedies. TensorFlow's C++ logging (oneDNN notices, cuInit
failures, NodeDef warnings) reads TF_CPP_MIN_LOG_LEVEL when TensorFlow loads, so it must be
set before the first import. Its native libraries also log through absl while they load,
before absl's logging is initialised ("All log messages before absl::InitializeLog() ...",
"Could not find cuda drivers"); no setting reaches those, so the first import of tensorflow
runs with the process's standard error (file descriptor 2) pointed at /dev/null. Python
exceptions are unaffected: they are raised, and printed after the descriptor is restored.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
QUIET_LOGGERS = ("tensorflow", "absl", "h5py", "keras")
SILENCED_IMPORT = "tensorflow"


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null within this scope (what C++ code writes to)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class SilentFirstImport(importlib.abc.MetaPathFinder):
    """A finder that lets the normal finders locate `name`, then wraps the module's execution
    in native_stderr_silenced. It removes itself once it has found the module."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module_quietly(module: ModuleType) -> None:
            with native_stderr_silenced():
                execute(module)

        loader.exec_module = exec_module_quietly  # type: ignore[method-assign]
        return spec


def quiet_libraries() -> None:
    """Silence TensorFlow, absl and Keras chatter for the rest of this process."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl)(\.|$)")
    if SILENCED_IMPORT not in sys.modules and not any(
        isinstance(finder, SilentFirstImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, SilentFirstImport(SILENCED_IMPORT))
