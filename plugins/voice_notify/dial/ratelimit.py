"""A call rate limit per gateway."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """At most ``per_second`` calls per second to one gateway."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._next = 0.0

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            time.sleep(self._next - now)
            now = self._next
        self._next = now + self._interval
