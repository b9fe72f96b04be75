"""The reader limits in force: params.yaml `limits` (danq.config.LimitsConfig).

Readers are opened from many places (the CLI, Kubeflow steps, the data gate, library calls),
so the limits are set once per process rather than passed through every call: the CLI and
each Kubeflow step apply the loaded parameters with `apply`; library users get the safe
defaults unless they apply their own. A reader reads `active()` when it opens its input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from danq.config import LimitsConfig

_active = LimitsConfig()


def active() -> LimitsConfig:
    """The limits readers enforce now."""
    return _active


def apply(limits: LimitsConfig) -> None:
    """Make `limits` the ones every reader opened from now on enforces."""
    global _active
    _active = limits


@contextmanager
def applied(limits: LimitsConfig) -> Iterator[None]:
    """`limits` in force inside the block, the previous ones restored after it."""
    previous = _active
    apply(limits)
    try:
        yield
    finally:
        apply(previous)
