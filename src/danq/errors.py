"""The project's errors: one hierarchy, each with the exit status the command line returns.

Library code raises these with a message that names the file, key or record and what is wrong;
only `danq.cli` turns them into a one-line `error: ...` and an exit status. Messages speak of
settings and inputs, never of command-line flags, so they read the same from Python, the CLI
and a Kubeflow step.
"""

from __future__ import annotations


class DanqError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(DanqError, ValueError):
    """A setting in params.yaml, an override or an argument is missing, unknown or out of
    range."""

    exit_code = 2


class DataError(DanqError, ValueError):
    """An input data file is missing, malformed or inconsistent."""


class DataGateFailed(DanqError):
    """The data gate ran and found blocking defects: nothing downstream may use the data."""


class FetchError(DanqError):
    """A download could not be completed or verified."""


class TrainingStateError(DanqError):
    """Saved training state (checkpoint, finished run) does not fit the current settings."""


class TrainingDiverged(DanqError):
    """The training or validation loss became NaN or infinite; the epoch was not kept."""

    exit_code = 3


class EvaluationError(DanqError):
    """A model or its training record cannot be evaluated as asked."""


class CandidateError(DanqError, ValueError):
    """Evaluations that cannot be compared or promoted (missing, mismatched, from other data)."""


class RegistryError(DanqError):
    """The model registry refused or could not complete an operation."""


class RegistryUnavailable(RegistryError):
    """The tracking/registry server cannot be reached."""


class AliasMoveError(RegistryError):
    """Moving the champion aliases failed; the message says what state they were left in."""


class ChampionChanged(RegistryError):
    """An alias move was refused: the champion is no longer the one the caller decided against."""


class RegistryLocked(RegistryError):
    """Another command holds the registry lock of the model and did not release it in time."""


class RegistryPermissionError(RegistryError):
    """The server refused the operation for lack of a permission; the message names it."""


class ModelIntegrityError(DanqError):
    """A model file is not the one that was registered (sha256), lacks its checksum, or is in a
    format the project refuses to load (SavedModel export, .h5)."""


class PredictError(DanqError, ValueError):
    """Input to prediction (sequences, model, target names) is unusable."""


class StudyStateError(DanqError):
    """A study folder or its MLflow runs do not fit the current study settings."""


class PipelineError(DanqError):
    """The Kubeflow pipeline cannot be compiled, uploaded or run as asked."""
