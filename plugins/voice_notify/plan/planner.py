"""The plan step for a campaign date of any size, in bounded memory.

The extract is read in chunks (``CHUNK`` notices). Each chunk is decided and given its
voices (by worker processes, when the task has them, while it writes the chunk before:
that part needs no database), then written in one transaction, set-based (COPY on
PostgreSQL): its ledger rows, its decision trail, the voice choices of its waiting rows,
and those rows into a staging table of this session, their manifest lines into a spool
file on local disk (:class:`ItemSpool`). Nothing about a notice outlives its chunk in
memory: what the plan needs across chunks is in the database and the spool.

Then the batches. Rows an earlier run of the date put into a batch keep it; rows without
one go into new batches, in notice order, sized by :func:`batches.choose_batch_size` so
that the date's batches stay within Airflow's ``[core] max_map_length``. Every batch of
the date and campaign gets its manifest (re)written with its rows this plan left waiting
for synthesis, and every key is returned: a re-run of the plan returns the same list, so
the mapped tasks it feeds keep their indexes.

Per-customer state does not cross chunks: a notice's age comes from its own row, and the
caps are the dial-time gate's.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import schema, staging
from voice_notify.plan import batches, calls, eligibility, trail
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.voices import assign_voices, customer_ages
from voice_notify.reasons import Reason
from voice_notify.report import audit
from voice_notify.voices import registry as voice_profiles

log = logging.getLogger(__name__)

#: Notices decided and written per transaction.
CHUNK = 5000
#: Threads writing manifests to the object store.
MANIFEST_WRITERS = 8
#: Manifest lines fetched at a time (each about a kilobyte).
MANIFEST_FETCH = 2000

# This session's waiting rows, with where their manifest line is in the plan's spool
# file: filled per chunk, read per batch.
_waiting_items = sa.Table(
    "vn_plan_waiting_items",
    sa.MetaData(),
    sa.Column("ledger_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("item_offset", sa.BigInteger, nullable=False),
    sa.Column("item_length", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
# The notices this session's plan decided: a row planned earlier whose notice is not
# among them has left the extract (paid, moved, deleted) and is skipped.
_decided_notices = sa.Table(
    "vn_plan_decided_notices",
    sa.MetaData(),
    sa.Column("notice_id", sa.Integer, primary_key=True, autoincrement=False),
    prefixes=["TEMPORARY"],
)
# Rows without a batch and the new batch each goes into.
_new_memberships = sa.Table(
    "vn_plan_new_memberships",
    sa.MetaData(),
    sa.Column("b_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("b_batch_key", sa.String(255), nullable=False),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True)
class BatchLimits:
    """What bounds the batches: the DAG's ``batch_size``, the synthesis slots, Airflow's
    ``[core] max_map_length`` and the largest batch allowed."""

    batch_size: int
    gpu_slots: int
    max_map_length: int
    max_batch_size: int


@dataclass
class PlanSummary:
    """What a plan did: counts for the log and XCom-free checks."""

    decisions: int = 0
    waiting: int = 0
    merged_calls: int = 0  # calls that carry two notices of one customer
    reasons: Counter = field(default_factory=Counter)
    batch_keys: list[str] = field(default_factory=list)
    new_batches: int = 0
    new_batch_size: int | None = None
    seconds: Counter = field(default_factory=Counter)  # by phase, for the log

    @contextlib.contextmanager
    def timed(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started


#: A notice as the extract has it: a row, or its JSON line not yet parsed.
Notice = Mapping[str, Any] | bytes | str


def parsed(notice: Notice) -> Mapping[str, Any]:
    """A notice's row (its JSON line parsed)."""
    return json.loads(notice) if isinstance(notice, bytes | str) else notice


def chunked(notices: Iterable[Notice], size: int | None = None) -> Iterable[list]:
    """The notices in lists of about ``size`` (default ``CHUNK``); a list is never cut
    between two notices of one customer that come one after the other (the extract
    orders by customer), so a customer's notices can share a call. Only the notices at
    a cut are parsed here."""
    iterator = iter(notices)
    chunk: list = []
    for notice in iterator:
        if len(chunk) >= (size or CHUNK) and parsed(notice).get("customer_id") != parsed(
            chunk[-1]
        ).get("customer_id"):
            yield chunk
            chunk = []
        chunk.append(notice)
    if chunk:
        yield chunk


def plan_date(
    conn: sa.Connection,
    notices: Iterable[Notice],
    campaign_date: dt.date,
    notice_types: Sequence[str],
    composer: Any,
    config: CampaignConfig,
    limits: BatchLimits,
    batch_key: Callable[[int], str],
    write_manifest: Callable[[str, bytes], object],
    merge_pairs: Sequence[tuple[str, str]] = (),
    workers: int = 1,
) -> PlanSummary:
    """Plan a campaign date: decisions into the ledger, batches, a manifest per batch.

    :param conn: a connection outside a transaction (each chunk commits its own; the
        staging table lives in its session)
    :param notices: the extract's rows (or their JSON lines), streamed
    :param batch_key: the key of the campaign's batch number ``n``
    :param write_manifest: stores a manifest's bytes under a key
    :param merge_pairs: the notice-type pairs whose notices of one customer share a call
        (``CampaignConfig.merge_pairs``; none by default)
    :param workers: processes deciding chunks while this one writes them; 1 decides
        in this process. The result is the same either way.
    """
    summary = PlanSummary()
    decided_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with conn.begin():
        # Consent is read when the plan is made: a revocation counts from the next plan.
        book = voice_profiles.load_consent_book(conn)
        for table in (_waiting_items, _decided_notices):
            staging.drop(conn, table)
            table.create(conn)
    decide = ChunkDecider(
        campaign_date, tuple(notice_types), composer, config, book, tuple(merge_pairs), decided_at
    )
    spool = ItemSpool()
    try:
        chunks = _timed_iter(chunked(notices), summary)  # timed a chunk at a time
        for decided in _decided(chunks, decide, workers, summary):
            with conn.begin():
                _record_chunk(conn, decided, campaign_date, config, decided_at, summary, spool)
        with conn.begin(), summary.timed("absent"):
            _skip_absent(conn, campaign_date, notice_types, batch_key, decided_at, summary)
        with conn.begin(), summary.timed("batches"):
            _assign_batches(conn, campaign_date, limits, batch_key, summary)
            calls.batch_riders(conn, campaign_date)
        with conn.begin(), summary.timed("manifests"):
            _write_manifests(conn, campaign_date, summary, write_manifest, spool)
    finally:
        spool.close()
        with conn.begin():
            staging.drop(conn, _waiting_items)
            staging.drop(conn, _decided_notices)
    return summary


def _timed_iter(items: Iterable, summary: PlanSummary) -> Iterable:
    """The items, the time spent reading them counted as ``read``."""
    iterator = iter(items)
    while True:
        with summary.timed("read"):
            item = next(iterator, None)
        if item is None:
            return
        yield item


#: A chunk's decisions (after voices and merging) and its merged calls.
Decided = tuple[list[eligibility.Decision], list[calls.MergedCall]]


@dataclass(frozen=True)
class ChunkDecider:
    """Decides a chunk of notices: eligibility, text, voices and the calls its customers'
    notices share. Needs no database, so it runs as well in a worker process as in the
    task's."""

    campaign_date: dt.date
    notice_types: tuple[str, ...]
    composer: Any
    config: CampaignConfig
    book: Any  # voice_profiles.ConsentBook, loaded once for the plan
    merge_pairs: tuple[tuple[str, str], ...] = ()
    decided_at: dt.datetime | None = None  # the plan's: its trail rows are made here too

    def __call__(self, chunk: Sequence[Notice]) -> Decided:
        # The composer memoizes readings (names, amounts, dates): forgotten before every
        # chunk, so the plan's memory does not grow with the campaign.
        getattr(self.composer, "clear_caches", lambda: None)()
        chunk = [parsed(notice) for notice in chunk]
        decisions = eligibility.decide_all(
            chunk, self.campaign_date, self.notice_types, self.composer, self.config
        )
        ages = customer_ages(chunk, self.campaign_date)
        decisions = assign_voices(decisions, self.book, self.config, self.campaign_date, ages)
        decisions, merged = calls.merge_calls(
            chunk, decisions, self.merge_pairs, self.config, self.composer
        )
        # The manifest lines' JSON and the trail rows here too: the task's own process
        # writes the chunk before while this one decides, and is the plan's bottleneck.
        # One replace per decision for both (a plan makes 100,000s). The segments of a
        # decision whose line is made travel in the line only: they were a third of
        # what crosses the pipe (eligibility.segments_of reads them back where needed).
        riders = {call.rider for call in merged}
        made, on = [], self.campaign_date
        for d in decisions:
            tail = d.item_tail if d.notice_id in riders else batches.item_tail(d, on)
            made.append(
                dataclasses.replace(
                    d,
                    item_tail=tail,
                    segments=d.segments if tail is None else (),
                    # As if no other date claimed the notice (the writer checks).
                    trail_row=d.trail_row
                    if self.decided_at is None
                    else trail.plan_trail_row(d, on, self.config, self.decided_at),
                )
            )
        return made, merged


def _decided(
    chunks: Iterable[list[Mapping[str, Any]]],
    decide: ChunkDecider,
    workers: int,
    summary: PlanSummary,
) -> Iterator[Decided]:
    """Each chunk's decisions and merged calls, in chunk order: decided here, or by
    ``workers`` forked processes while the caller writes the chunk before (at most
    ``workers + 1`` chunks in flight, so memory stays bounded)."""
    if workers > 1 and multiprocessing.current_process().daemon:
        # A daemonic process may not have children (a worker pool's own process):
        # decide here instead, with the same result.
        log.warning("plan: this process cannot fork workers; deciding in-process")
        workers = 1
    if workers <= 1:
        for chunk in chunks:
            with summary.timed("decide"):
                decisions = decide(chunk)
            yield decisions
        return
    # Forked: the workers start with the composer, lexicons and consent book already
    # loaded, and never touch the parent's connections (they exit without closing them).
    pool = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(decide, logging.getLogger("voice_notify").getEffectiveLevel()),
    )
    try:
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append(pool.submit(_decide_in_worker, chunk))
            if len(pending) > workers:
                yield _worker_result(pending.popleft(), summary)
        while pending:
            yield _worker_result(pending.popleft(), summary)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker_decide: ChunkDecider | None = None


class ItemSpool:
    """The manifest lines of the rows a plan leaves waiting, in a temporary file on local
    disk until their batches are known (about a kilobyte each: 100 MB at 100,000). The
    database keeps only where each line is, so neither the task's memory nor the
    database carries the lines (through the database they cost a COPY in and a query
    out of their every byte)."""

    def __init__(self) -> None:
        # Closed by close(), in plan_date's finally: the spool outlives any one block.
        self._file = tempfile.TemporaryFile(prefix="vn-plan-items-", buffering=0)  # noqa: SIM115
        self._end = 0

    def add(self, items: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, int, int]]:
        """Spool ``(ledger id, notice id, line)`` items; their ``_waiting_items`` rows."""
        rows, parts = [], []
        for ledger_id, notice_id, line in items:
            data = line.encode("utf-8")
            rows.append((ledger_id, notice_id, self._end, len(data)))
            parts.append(data)
            self._end += len(data)
        self._file.write(b"".join(parts))  # unbuffered: one write, read back by pread
        return rows

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._file.fileno(), length, offset)
        if len(data) != length:
            raise OSError(f"plan item spool: {len(data)} of {length} bytes at {offset}")
        return data

    def close(self) -> None:
        self._file.close()


class _LogCollector(logging.Handler):
    """A worker's log records, sent back with its chunk: the task's log handlers (a
    socket to Airflow's supervisor) belong to the parent, which emits them in order."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # picklable whatever the args
        record.exc_info = record.exc_text = None
        self.records.append(record)


_worker_log = _LogCollector()


def _start_worker(decide: ChunkDecider, level: int) -> None:
    global _worker_decide
    _worker_decide = decide
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_worker_log)
    logging.getLogger("voice_notify").setLevel(level)


def _decide_in_worker(
    chunk: Sequence[Notice],
) -> tuple[Decided, list[logging.LogRecord]]:
    assert _worker_decide is not None, "initializer not run"
    _worker_log.records = []
    return _worker_decide(chunk), _worker_log.records


def _worker_result(future: concurrent.futures.Future, summary: PlanSummary) -> Decided:
    with summary.timed("decide"):  # here: waiting for the workers
        decided, records = future.result()
    for record in records:
        logging.getLogger(record.name).handle(record)
    return decided


def _record_chunk(
    conn: sa.Connection,
    decided: Decided,
    campaign_date: dt.date,
    config: CampaignConfig,
    decided_at: dt.datetime,
    summary: PlanSummary,
    spool: ItemSpool,
) -> None:
    """A chunk's decisions into the ledger, the trail and the audit (merged calls' riders
    too); its waiting rows into the staging table, their manifest lines into the spool."""
    decisions, merged = decided
    with summary.timed("ledger"):
        claimed = ledger.notices_settled_elsewhere(
            conn, [d.notice_id for d in decisions], campaign_date
        )
        waiting = batches.record_decisions(
            conn, decisions, campaign_date, claimed_elsewhere=claimed
        )
    with summary.timed("trail"):
        trail.record_plan_trail(
            conn, decisions, campaign_date, config, decided_at, claimed_elsewhere=claimed
        )
    by_notice = {d.notice_id: d for d in decisions}
    riders: set[int] = set()
    if merged or any(row.call_with is not None or row.confirm_key for row in waiting):
        with summary.timed("merge"):
            riders, dropped = calls.record_merges(conn, merged, waiting, config)
        for call in dropped:  # its lead speaks its own text after all
            by_notice[call.lead] = dataclasses.replace(
                by_notice[call.lead], segments=call.lead_segments, item_tail=None
            )
        summary.merged_calls += len(merged) - len(dropped)
    with summary.timed("audit"):
        audit.record_voice_choices(conn, audit.voice_choices(waiting, by_notice, campaign_date))
    with summary.timed("stage"):
        items = batches.item_lines(
            [row for row in waiting if row.id not in riders], by_notice, campaign_date
        )
        if items:
            staging.load_rows(conn, _waiting_items, spool.add(items))
    staging.load_rows(conn, _decided_notices, [(d.notice_id,) for d in decisions])
    summary.decisions += len(decisions)
    summary.waiting += len(items)
    summary.reasons.update(d.reason_code for d in decisions if not d.planned)


def _skip_absent(
    conn: sa.Connection,
    campaign_date: dt.date,
    notice_types: Sequence[str],
    batch_key: Callable[[int], str],
    decided_at: dt.datetime,
    summary: PlanSummary,
) -> None:
    """Rows an earlier plan of the campaign left ``planned`` on the date (in one of its
    batches, or in none yet) whose notice this plan did not see: the CRM no longer has it
    due. Skipped with ``notice_no_longer_due`` and a trail entry, instead of waiting for
    a synthesis their batch's rewritten manifest no longer asks for."""
    table = schema.dispatch_ledger
    prefix = batch_key(0).rsplit("/", 1)[0] + "/"
    absent = conn.execute(
        sa.select(table.c.id, table.c.notice_id).where(
            table.c.campaign_date == campaign_date,
            table.c.state == ledger.LedgerState.PLANNED.value,
            table.c.notice_type.in_(list(notice_types)),
            sa.or_(
                table.c.batch_key.is_(None),
                table.c.batch_key.startswith(prefix, autoescape=True),
            ),
            ~sa.exists().where(_decided_notices.c.notice_id == table.c.notice_id),
        )
    ).all()
    if not absent:
        return
    ledger.skip_planned(conn, [row.id for row in absent], Reason.NOTICE_NO_LONGER_DUE)
    trail.record_evaluations(
        conn,
        (trail.absent_evaluation(row.notice_id, campaign_date, decided_at) for row in absent),
    )
    summary.reasons[Reason.NOTICE_NO_LONGER_DUE] += len(absent)
    summary.decisions += len(absent)
    log.warning(
        "plan %s: %d rows planned earlier are no longer in the extract: "
        "skipped reason=notice_no_longer_due",
        campaign_date,
        len(absent),
    )


def _batches_of_date(conn: sa.Connection, campaign_date: dt.date, prefix: str) -> list[str]:
    """The batch keys the ledger holds for the date under the campaign's prefix, in order."""
    table = schema.dispatch_ledger
    keys = conn.execute(
        sa.select(table.c.batch_key)
        .where(
            table.c.campaign_date == campaign_date,
            # Escaped: a campaign named my_x must not match myyx's keys.
            table.c.batch_key.startswith(prefix, autoescape=True),
        )
        .distinct()
    ).scalars()
    return sorted(keys, key=lambda k: (len(k), k))


def _assign_batches(
    conn: sa.Connection,
    campaign_date: dt.date,
    limits: BatchLimits,
    batch_key: Callable[[int], str],
    summary: PlanSummary,
) -> None:
    """Waiting rows without a batch into new batches (in notice order); the others keep
    theirs. Sets ``summary.batch_keys`` to every batch of the date and campaign."""
    table = schema.dispatch_ledger
    prefix = batch_key(0).rsplit("/", 1)[0] + "/"
    existing = _batches_of_date(conn, campaign_date, prefix)
    unbatched = list(
        conn.execute(
            sa.select(_waiting_items.c.ledger_id)
            .join(table, table.c.id == _waiting_items.c.ledger_id)
            .where(table.c.batch_key.is_(None))
            .order_by(_waiting_items.c.notice_id)
        ).scalars()
    )
    size = batches.choose_batch_size(
        len(unbatched),
        limits.batch_size,
        limits.gpu_slots,
        limits.max_map_length,
        existing_batches=len(existing),
        max_batch_size=limits.max_batch_size,
    )
    taken, index, new_keys = set(existing), 0, []
    memberships = []
    for start in range(0, len(unbatched), size):
        while batch_key(index) in taken:
            index += 1
        key = batch_key(index)
        taken.add(key)
        memberships.extend({"b_id": i, "b_batch_key": key} for i in unbatched[start : start + size])
        new_keys.append(key)
    if memberships:
        # One UPDATE from a staged table, not one per batch: a large date has hundreds.
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with staging.staged(conn, _new_memberships, memberships) as staged:
            conn.execute(
                table.update()
                .where(table.c.id == staged.c.b_id, table.c.batch_key.is_(None))
                .values(batch_key=staged.c.b_batch_key, updated_at=now)
            )
    summary.batch_keys = sorted(taken, key=lambda k: (len(k), k))
    summary.new_batches = len(new_keys)
    summary.new_batch_size = size if new_keys else None


def _write_manifests(
    conn: sa.Connection,
    campaign_date: dt.date,
    summary: PlanSummary,
    write_manifest: Callable[[str, bytes], object],
    spool: ItemSpool,
) -> None:
    """Every batch's manifest: its rows this plan left waiting, in notice order (a batch
    with none gets an empty manifest, so its synthesis has nothing left to do).

    The staged rows are read in one pass ordered by batch (streamed, one batch's lines
    read from the spool and in memory at a time; one query per batch cost seconds at
    500 batches) and written by ``MANIFEST_WRITERS`` threads (an object store answers
    each write in tens of milliseconds), at most twice as many in flight.
    """
    table = schema.dispatch_ledger
    wanted = set(summary.batch_keys)
    rows = conn.execute(
        sa.select(table.c.batch_key, _waiting_items.c.item_offset, _waiting_items.c.item_length)
        .join(table, table.c.id == _waiting_items.c.ledger_id)
        .where(table.c.campaign_date == campaign_date, table.c.batch_key.is_not(None))
        .order_by(table.c.batch_key, _waiting_items.c.notice_id)
        .execution_options(yield_per=MANIFEST_FETCH)
    )
    with concurrent.futures.ThreadPoolExecutor(MANIFEST_WRITERS) as writers:
        in_flight: collections.deque = collections.deque()

        def write(key: str, lines: list[bytes]) -> None:
            body = b"".join(line + b"\n" for line in lines)
            if len(in_flight) >= 2 * MANIFEST_WRITERS:
                in_flight.popleft().result()
            in_flight.append(writers.submit(write_manifest, key, body))
            log.info("batch %s: %d notices waiting for synthesis", key, len(lines))

        written: set[str] = set()
        for key, group in itertools.groupby(rows, key=lambda row: row.batch_key):
            if key in wanted:  # the staging table holds only this campaign's rows
                write(key, [spool.read(row.item_offset, row.item_length) for row in group])
                written.add(key)
        for key in summary.batch_keys:
            if key not in written:
                write(key, [])
        for future in in_flight:
            future.result()
