"""The shared call pacing: workers reserving call slots at once never share or crowd one."""

from __future__ import annotations

import itertools
import threading

import pytest
import sqlalchemy as sa

from voice_notify.db import migrate
from voice_notify.db.sql import make_engine
from voice_notify.dial.ratelimit import SharedRateLimiter

RATE = 50.0  # calls a second: slots 20 ms apart


def test_parallel_reservations_get_distinct_slots_a_rate_apart(db_url: sa.URL) -> None:
    setup = make_engine(db_url)
    migrate.upgrade(setup)
    setup.dispose()
    slots: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        # Each thread has its own engine: its own connection, as another worker would.
        engine = make_engine(db_url)
        limiter = SharedRateLimiter(engine, "voice_gateway", RATE)
        try:
            for _ in range(15):
                slot = limiter.reserve()
                with lock:
                    slots.append(slot)
        except BaseException as exc:  # reported below, with the test's assertion
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(slots) == 60
    ordered = sorted(slots)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) >= 1 / RATE - 1e-6, "two calls got slots closer than the rate allows"


def test_an_idle_gateway_starts_now_and_a_zero_rate_never_waits(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    clock = iter([100.0, 100.0, 500.0, 500.0]).__next__
    slept: list[float] = []
    limiter = SharedRateLimiter(engine, "g", 2.0, clock=clock, sleep=slept.append)
    assert limiter.reserve() == 100.0
    assert limiter.reserve() == pytest.approx(100.5)  # the next slot, half a second on
    assert limiter.reserve() == 500.0  # long idle: the slot is now, not in the past
    unlimited = SharedRateLimiter(engine, "g2", 0, sleep=slept.append)
    unlimited.wait()
    assert slept == []
