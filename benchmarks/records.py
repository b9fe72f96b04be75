"""Figures, their references and ratios: the records every benchmark returns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Summary:
    """min / median / max of repeated measurements of one quantity."""

    values: tuple[float, ...]
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("a summary needs at least one value")
        vals = tuple(float(v) for v in values)
        return cls(vals, min(vals), statistics.median(vals), max(vals))


@dataclass(frozen=True)
class Figure:
    """One benchmark figure: our measurement, the reference it is compared with, the ratio.

    `higher_is_better` orients the ratio so that > 1 always means ours wins: ours/reference
    for rates, reference/ours for times and bytes.
    """

    name: str
    unit: str
    ours: Summary
    ours_label: str
    reference: Summary | None = None
    reference_label: str = ""
    higher_is_better: bool = True
    target: float | None = None  # the ratio the issue asks for; None: informational
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference is None:
            return None
        ours, ref = self.ours.median, self.reference.median
        if self.higher_is_better:
            return ours / ref if ref else None
        return ref / ours if ours else None

    @property
    def target_met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio >= self.target

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["target_met"] = self.target_met
        return data


def repeat_timed(fn: Callable[[], object], repeats: int) -> Summary:
    """Wall seconds of `repeats` calls of fn."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return Summary.of(times)
