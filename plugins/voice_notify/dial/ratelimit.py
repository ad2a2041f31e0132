"""The call rate per gateway: in one process, or shared by every worker through the ledger.

A gateway (a trunk, a Twilio account) allows so many new calls a second, whichever
worker places them. ``SharedRateLimiter`` reserves each call's start slot in the ledger
database (``gateway_pacing``): the reservation is one short transaction that locks the
gateway's row, so two dial tasks on two hosts get distinct slots ``1 / rate`` apart and
the combined rate holds. ``RateLimiter`` is the same pacing within one process (tests,
tools).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify.db.sql import insert_ignoring_duplicates


class CallPacer(Protocol):
    def wait(self) -> None:
        """Block until this process may start its next call."""
        ...


class RateLimiter:
    """At most ``per_second`` calls per second from this process."""

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


class SharedRateLimiter:
    """At most ``per_second`` calls per second to ``gateway``, across all processes.

    Wall-clock (epoch) time, so workers on several hosts agree as far as their clocks
    do (NTP keeps them within milliseconds).

    :param per_second: the gateway's call rate; 0 or less means no limit
    """

    def __init__(
        self,
        engine: sa.Engine,
        gateway: str,
        per_second: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.gateway = gateway[:64]
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._row_exists = False

    def reserve(self) -> float:
        """Reserve the next free slot; returns its start (epoch seconds)."""
        table = schema.gateway_pacing
        if not self._row_exists:
            # Its own transaction: an insert racing others inside the reservation would
            # take gap locks and deadlock on MariaDB.
            with self.engine.begin() as conn:
                conn.execute(
                    insert_ignoring_duplicates(conn, table, ("gateway",)),
                    {"gateway": self.gateway, "next_slot_at": 0.0},
                )
            self._row_exists = True
        now = self._clock()
        with self.engine.begin() as conn:
            # The UPDATE locks the gateway's row (the database, on SQLite) until commit,
            # so the read after it sees no other reservation in between.
            conn.execute(
                table.update()
                .where(table.c.gateway == self.gateway)
                .values(
                    next_slot_at=sa.case(
                        (table.c.next_slot_at < now, now + self._interval),
                        else_=table.c.next_slot_at + self._interval,
                    )
                )
            )
            taken_until = conn.execute(
                sa.select(table.c.next_slot_at).where(table.c.gateway == self.gateway)
            ).scalar_one()
        return taken_until - self._interval

    def wait(self) -> None:
        if self._interval == 0.0:
            return
        slot = self.reserve()
        delay = slot - self._clock()
        if delay > 0:
            self._sleep(delay)
