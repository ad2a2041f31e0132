"""Faults the voice gateway simulator injects, configured by ``GATEWAY_FAULTS``.

The spec is comma-separated ``name=probability`` pairs, for example
``GATEWAY_FAULTS=timeout_after_accept=0.1,duplicate_callback=0.3``. Every fault
is drawn on its own, deterministically from ``sha256(seed, key, attempt, name)``,
so a rehearsal with the same seed fails the same requests, and a retry of a
failed request (the next attempt with the same key) draws afresh and can
succeed. The names and what they do are documented in ``simulator.py``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_VAR = "GATEWAY_FAULTS"

# Faults on the request that places a call, drawn per request attempt.
TIMEOUT_AFTER_ACCEPT = "timeout_after_accept"
ERROR_BEFORE_ACCEPT = "error_before_accept"
ERROR_AFTER_ACCEPT = "error_after_accept"
SLOW_AUDIO_FETCH = "slow_audio_fetch"
# Faults on the status callbacks of a call, drawn once per call.
DUPLICATE_CALLBACK = "duplicate_callback"
LATE_CALLBACK = "late_callback"
OUT_OF_ORDER_CALLBACK = "out_of_order_callback"

FAULT_NAMES = (
    TIMEOUT_AFTER_ACCEPT,
    ERROR_BEFORE_ACCEPT,
    ERROR_AFTER_ACCEPT,
    DUPLICATE_CALLBACK,
    LATE_CALLBACK,
    OUT_OF_ORDER_CALLBACK,
    SLOW_AUDIO_FETCH,
)
CALLBACK_FAULTS = (DUPLICATE_CALLBACK, LATE_CALLBACK, OUT_OF_ORDER_CALLBACK)


@dataclass(frozen=True)
class FaultPlan:
    """How likely each fault is; a fault left out never happens."""

    probabilities: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, probability in self.probabilities.items():
            if name not in FAULT_NAMES:
                raise ValueError(f"unknown gateway fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability of fault {name} must be within [0, 1]")

    def __bool__(self) -> bool:
        return any(p > 0.0 for p in self.probabilities.values())

    def fires(self, seed: int, key: str, attempt: int | str, name: str) -> bool:
        """Whether fault ``name`` hits this request (or call), the same on every run."""
        probability = self.probabilities.get(name, 0.0)
        if probability <= 0.0:
            return False
        return fault_draw(seed, key, attempt, name) < probability

    def spec(self) -> str:
        """The plan written back as a ``GATEWAY_FAULTS`` value."""
        return ",".join(f"{name}={p:g}" for name, p in self.probabilities.items())


NO_FAULTS = FaultPlan()


def fault_draw(seed: int, key: str, attempt: int | str, name: str) -> float:
    """A point in [0, 1) fixed by seed, key, attempt and fault name."""
    digest = hashlib.sha256(f"fault\x1f{seed}\x1f{key}\x1f{attempt}\x1f{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_faults(spec: str | None) -> FaultPlan:
    """Parse ``timeout_after_accept=0.1,duplicate_callback=0.3`` into a plan.

    An empty or missing spec means no faults.

    :raises ValueError: naming the bad item, for an unknown fault or a probability
        that is not a number in [0, 1]; the simulator refuses to start on it
    """
    probabilities: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, sep, value = (piece.strip() for piece in item.partition("="))
        if name not in FAULT_NAMES:
            raise ValueError(
                f"{ENV_VAR}: unknown fault {name!r} in {item!r}; known: {', '.join(FAULT_NAMES)}"
            )
        try:
            probability = float(value) if sep else math.nan
        except ValueError:
            probability = math.nan
        if not 0.0 <= probability <= 1.0:  # also refuses NaN
            raise ValueError(
                f"{ENV_VAR}: bad probability in {item!r}; expected {name}=P with P in [0, 1]"
            )
        probabilities[name] = probability
    return FaultPlan(probabilities)
