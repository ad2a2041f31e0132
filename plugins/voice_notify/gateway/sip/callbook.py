"""The SIP call service's call book, in the ledger database (``sip_calls``).

Every process with the database can look a call up: another replica of the service,
a restarted one, an operator. What the book promises:

- a call is accepted once per idempotency key (a unique key decides a race between
  replicas), and a key used again for another number or audio file is a conflict;
- a call id is fixed at acceptance, before any INVITE leaves;
- a key press is committed the moment it arrives (``record_digits``), before the
  call goes on, so a service killed right after it still reports the key;
- a call ends once: ``end`` is conditional on the call being open, so the thread that
  carried it and the sweeper that settles a dead run's calls cannot both end it;
- the calls of a service run that died (or of an earlier run of a restarted service)
  are settled as interrupted, never placed again (``settle_orphans``).

Writes retry with bounded backoff when the database connection drops (a failover,
``pg_terminate_backend``) or SQLite is busy: each is keyed or conditional, so a write
that did go through before the error is harmless to repeat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from voice_notify.db import schema
from voice_notify.db.sql import is_transient_db_error
from voice_notify.gateway.base import CallState, CallStatus

log = logging.getLogger(__name__)

__all__ = ["BookedCall", "CallBook", "call_id_for", "interrupted_end"]

T = TypeVar("T")

INTERRUPTED = "interrupted"
NOT_DIALED = "not_dialed"
_calls = schema.sip_calls
_services = schema.sip_call_services


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def call_id_for(idempotency_key: str) -> str:
    """The call id of the call placed with this key: fixed before any INVITE leaves."""
    return "sip-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def db_retry(
    attempts: int = 6, max_wait_s: float = 4.0
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry a keyed or conditional write when the connection drops (bounded backoff)."""
    return retry(
        retry=retry_if_exception(is_transient_db_error),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.1, max=max_wait_s),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "call book: database error (%s); try %d again",
            type(state.outcome.exception()).__name__,
            state.attempt_number + 1,
        ),
    )


@dataclass(frozen=True)
class BookedCall:
    """One ``sip_calls`` row."""

    call_id: str
    idempotency_key: str
    to_sha256: str
    audio_sha256: str
    owner: str
    state: CallState
    error: str | None
    digits: str
    status_callback: str | None
    dialed_at: dt.datetime | None
    answered_at: dt.datetime | None
    ended_at: dt.datetime | None
    talk_s: float | None

    @classmethod
    def from_row(cls, row: Any) -> BookedCall:
        return cls(
            call_id=row.call_id,
            idempotency_key=row.idempotency_key,
            to_sha256=row.to_sha256,
            audio_sha256=row.audio_sha256,
            owner=row.owner,
            state=CallState(row.state),
            error=row.error,
            digits=row.digits or "",
            status_callback=row.status_callback,
            dialed_at=row.dialed_at,
            answered_at=row.answered_at,
            ended_at=row.ended_at,
            talk_s=row.talk_s,
        )

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def key_pressed(self) -> str | None:
        # The first key counts, as with a one-digit IVR menu (Twilio's <Gather numDigits=1>).
        return self.digits[:1] or None

    def status(self) -> CallStatus:
        """The protocol's status: how the call ended is told once it has."""
        return CallStatus(
            call_id=self.call_id,
            idempotency_key=self.idempotency_key,
            state=self.state,
            key_pressed=self.key_pressed if self.ended else None,
            duration_s=(self.talk_s or 0.0) if self.ended else None,
            error=self.error,
        )


def interrupted_end(call: BookedCall) -> tuple[CallState, str | None]:
    """How a call whose service run died ends: honestly, and never placed again.

    A key the customer pressed was committed when it arrived and still counts (an
    opt-out must reach the CRM); a call that never left the queue was not placed.
    """
    if call.dialed_at is None:
        return CallState.CANCELED, NOT_DIALED
    if call.answered_at is not None and call.digits:
        return CallState.COMPLETED, INTERRUPTED
    return CallState.FAILED, INTERRUPTED


class CallBook:
    """The ``sip_calls`` rows of one ledger database, seen by one service run.

    :param owner: this service run (``name/host/pid/start``): the calls it carries
    """

    def __init__(self, engine: sa.Engine, owner: str) -> None:
        self.engine = engine
        self.owner = owner

    # -- reading ------------------------------------------------------------------------

    @db_retry()
    def by_key(self, idempotency_key: str) -> BookedCall | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_calls).where(_calls.c.idempotency_key == idempotency_key)
            ).first()
        return BookedCall.from_row(row) if row else None

    @db_retry()
    def by_call_id(self, call_id: str) -> BookedCall | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_calls).where(_calls.c.call_id == call_id)).first()
        return BookedCall.from_row(row) if row else None

    # -- a call's life --------------------------------------------------------------------

    @db_retry()
    def accept(self, values: Mapping[str, Any]) -> tuple[BookedCall, bool]:
        """Record a new call, or return the one a racing request recorded first.

        :param values: ``idempotency_key``, ``to_sha256``, ``audio_sha256`` and the
            optional columns; the call id, owner, state and times are set here
        :returns: the call and whether this request created it
        """
        key = values["idempotency_key"]
        now = _utcnow()
        row = {
            **values,
            "call_id": call_id_for(key),
            "owner": self.owner,
            "state": CallState.QUEUED.value,
            "digits": "",
            "accepted_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(_calls.insert(), row)
            created = True
        except sa.exc.IntegrityError:
            created = False  # another request (or replica) recorded the key first
        booked = self.by_key(key)
        assert booked is not None, "an accepted call is in the book"
        return booked, created

    def _update_open(self, call_id: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                _calls.update()
                .where(_calls.c.call_id == call_id, _calls.c.ended_at.is_(None))
                .values(updated_at=_utcnow(), **values)
            )
        return result.rowcount == 1

    @db_retry()
    def dialing(self, call_id: str, sip_call_id: str | None, codec: str | None) -> None:
        """The INVITE is on the wire: from here on the call counts as placed."""
        self._update_open(call_id, dialed_at=_utcnow(), sip_call_id=sip_call_id, codec=codec)

    @db_retry()
    def progress(self, call_id: str, state: CallState) -> None:
        """Ringing or answered (no end yet)."""
        values: dict[str, Any] = {"state": state.value}
        if state is CallState.IN_PROGRESS:
            values["answered_at"] = _utcnow()
        self._update_open(call_id, **values)

    @db_retry(attempts=10, max_wait_s=2.0)
    def record_digits(self, call_id: str, digits: str) -> None:
        """Commit the keys pressed so far (called on each key, before anything else)."""
        now = _utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                _calls.update()
                .where(_calls.c.call_id == call_id)
                .values(digits=digits[:32], updated_at=now)
            )
            conn.execute(
                _calls.update()
                .where(_calls.c.call_id == call_id, _calls.c.first_key_at.is_(None))
                .values(first_key_at=now)
            )

    @db_retry(attempts=12, max_wait_s=5.0)
    def end(self, call_id: str, state: CallState, error: str | None, **values: Any) -> bool:
        """End a call once; False if it had already ended (the other writer won)."""
        return self._update_open(
            call_id, state=state.value, error=error, ended_at=_utcnow(), **values
        )

    # -- service runs -------------------------------------------------------------------

    @db_retry()
    def register(self, name: str, host: str, pid: int) -> None:
        """Record this service run (its heartbeat starts now)."""
        now = _utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                _services.insert(),
                {
                    "owner": self.owner,
                    "name": name,
                    "host": host,
                    "pid": pid,
                    "started_at": now,
                    "heartbeat_at": now,
                },
            )

    @db_retry()
    def live_namesakes(self, name: str, lease_s: float) -> list[sa.Row]:
        """Other runs under ``name`` that have not stopped and were heard from within
        the lease: a live one means two replicas were given one name."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(_services.c.owner, _services.c.host, _services.c.pid).where(
                    _services.c.name == name,
                    _services.c.owner != self.owner,
                    _services.c.stopped_at.is_(None),
                    _services.c.heartbeat_at >= _utcnow() - dt.timedelta(seconds=lease_s),
                )
            ).all()

    @db_retry()
    def heartbeat(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _services.update()
                .where(_services.c.owner == self.owner)
                .values(heartbeat_at=_utcnow())
            )

    @db_retry()
    def stopped(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _services.update()
                .where(_services.c.owner == self.owner)
                .values(stopped_at=_utcnow(), heartbeat_at=_utcnow())
            )

    @db_retry()
    def orphans(self, name: str, lease_s: float | None) -> list[BookedCall]:
        """Open calls no live run carries: an earlier run of ``name`` (this replica,
        restarted), a run that stopped, and, when ``lease_s`` is given, a run whose
        heartbeat is older than that (a replica that died and did not come back)."""
        dead = [_services.c.name == name, _services.c.stopped_at.is_not(None)]
        if lease_s is not None:
            dead.append(_services.c.heartbeat_at < _utcnow() - dt.timedelta(seconds=lease_s))
        dead_runs = (
            sa.select(_services.c.owner).where(_services.c.owner != self.owner).where(sa.or_(*dead))
        )
        unknown_runs = sa.select(_services.c.owner)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_calls).where(
                    _calls.c.ended_at.is_(None),
                    _calls.c.owner != self.owner,
                    sa.or_(_calls.c.owner.in_(dead_runs), _calls.c.owner.not_in(unknown_runs)),
                )
            ).all()
        return [BookedCall.from_row(row) for row in rows]

    @db_retry()
    def own_open_calls(self, accepted_before: dt.datetime) -> list[BookedCall]:
        """This run's open calls accepted before a time (to find any it lost track of)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_calls).where(
                    _calls.c.ended_at.is_(None),
                    _calls.c.owner == self.owner,
                    _calls.c.accepted_at < accepted_before,
                )
            ).all()
        return [BookedCall.from_row(row) for row in rows]
