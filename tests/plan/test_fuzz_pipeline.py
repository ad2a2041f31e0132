"""Property-based fuzzing: CRM rows of every column type through extract → plan → dial.

Hypothesis writes rows into a SQLite CRM (SQLite stores any value in any column, the way
a careless import does): every column gets, besides plausible values, values of every
other type (integers, floats with NaN and infinities, booleans, bytes, empty and huge
text, control characters, digits of other scripts, impossible dates, tzdata folders,
JSON of every shape). The pipeline's domain steps then run as the DAG runs them, with
the snapshot's JSON round trip, the voice assignment and a gateway that accepts calls.

What must hold for every row: no exception anywhere; every extracted notice has exactly
one ledger row; every skipped row has a reason code the pipeline documents; no key is
sent twice. ``FUZZ_ROWS`` rows in all (≥ 10,000): ``EXAMPLES`` examples of
``ROWS_PER_EXAMPLE`` rows, derandomized so CI sees the same rows every run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from synthesis.text import REASON_CODES, NoticeComposer
from tests.synthesis.text.samples import ALL_NOTICES, INCLUDE
from voice_notify import ledger
from voice_notify.db import migrate
from voice_notify.dial import dialer, ratelimit
from voice_notify.extract import due_notices
from voice_notify.gateway.base import CallRequest, CallState, CallStatus, GatewayPermanentError
from voice_notify.ledger import LedgerState
from voice_notify.plan import batches, eligibility
from voice_notify.plan.campaigns import CallingHours, load_campaign_config
from voice_notify.plan.voices import assign_voices
from voice_notify.reasons import Reason
from voice_notify.voices import registry
from voice_notify_dev import demo_crm

DAY = dt.date(2026, 11, 26)
NOON_UTC = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)
CONFIG = replace(
    load_campaign_config(INCLUDE / "demo" / "campaigns.yaml"),
    calling_hours=CallingHours(start=dt.time(0), end=None),
)
ROWS_PER_EXAMPLE = 50
EXAMPLES = 205  # 10,250 rows
FUZZ_ROWS = ROWS_PER_EXAMPLE * EXAMPLES
KNOWN_REASONS = (
    {str(r) for r in Reason}
    | set(REASON_CODES)
    | {v for k, v in vars(registry).items() if k.startswith("VOICE_") and isinstance(v, str)}
)
STATS: Counter[str] = Counter()
REASONS: Counter[str] = Counter()

# --- values of every type ---------------------------------------------------------------

_TRICKY_TEXT = [
    "",
    " ",
    "null",
    "NaN",
    "2026-11-31",
    "2026-02-30",
    "2026-13-01",
    "2026-11-27T25:00:00",
    "0000-00-00",
    "Asia",
    "Asia/",
    "asia/shanghai",
    "Asia/Shanghai\n",
    "../../../../etc/passwd",
    "UTC+8",
    "１３８１２３４５６７８",
    "١٣٨١٢٣٤٥٦٧٨",
    "¹³⁸¹²³⁴⁵⁶⁷⁸",
    "138 1234 5678\nINFO forged",
    "+86 138-1234-5678",
    "0086 13812345678",
    "1-800-FLOWERS",
    "\x1b[31mred\x1b[0m",
    "\u202eevil\u202c",
    "曾\n小明",
    "{}",
    "[]",
    '{"amount": null}',
    '{"amount": "3280.50"',
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    "x" * 70000,
    "yes",
    "no",
    "maybe",
    "true",
    "0",
    "1",
]

# Cheap to draw (generation, not the pipeline, is what costs here): short text of any
# script, and the tricky values by name.
wild = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(_TRICKY_TEXT),
    st.integers(-800_000, 3_000_000).map(
        lambda n: (DAY + dt.timedelta(days=n % 3_000_000 - 700_000)).isoformat()
    ),
)
valid_phone = st.tuples(st.sampled_from("3456789"), st.integers(0, 10**9 - 1)).map(
    lambda t: f"1{t[0]}{t[1]:09d}"
)


COLUMNS = (
    "name",
    "phone",
    "preferred_dialect",
    "time_zone",
    "voice_opt_out",
    "notice_type",
    "variables",
    "due_date",
    "status",
)


def _variables(notice_type: Any) -> st.SearchStrategy:
    """The notice type's own variables, each one now and then replaced by anything."""
    base = ALL_NOTICES.get(notice_type) if isinstance(notice_type, str) else None
    if base is None:
        return st.sampled_from([json.dumps(v) for v in ALL_NOTICES.values()])
    return st.fixed_dictionaries(
        {
            k: st.integers(0, 5).flatmap(lambda i, v=v: wild if i == 0 else st.just(v))
            for k, v in base.items()
        }
    ).map(lambda d: json.dumps(d, ensure_ascii=False, default=str))


def _other_scripts(number: str) -> list[str]:
    """A valid number written with the digits of other scripts (and wider forms)."""
    return [
        number.translate({ord("0") + d: base + d for d in range(10)})
        for base in (0xFF10, 0x0660, 0x06F0, 0x0966, 0x2070)  # full-width .. superscript-ish
    ]


# Per column, besides values of every type: the near misses that column attracts.
NEAR_MISSES = {
    "due_date": st.sampled_from(
        [f"2026-11-{d}" for d in (31, 32, "3O", "30x", "27T25:00:00")]
        + ["2026-11-26 ", "2026-11-2"]
    ),
    "time_zone": st.sampled_from(
        ["Asia", "Asia/", "asia/shanghai", "UTC+8", "../etc", "Mars/Base"]
    ),
    "phone": valid_phone.flatmap(lambda n: st.sampled_from(_other_scripts(n))),
    "voice_opt_out": st.sampled_from(["maybe", "2", 2, -1, 0.5, "oui", b"\x01"]),
}


@st.composite
def crm_row(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """One customer and one notice of theirs: plausible, with up to three columns (of those
    the pipeline reads) replaced by values of any type or by that column's near misses."""
    corrupt = draw(st.sets(st.sampled_from(COLUMNS), max_size=3))

    def column(name: str, valid: st.SearchStrategy) -> Any:
        if name not in corrupt:
            return draw(valid)
        near = NEAR_MISSES.get(name)
        return draw(wild if near is None or draw(st.booleans()) else near)

    notice_type = column("notice_type", st.sampled_from(demo_crm.NOTICE_TYPES))
    customer = {
        "name": column("name", st.sampled_from(["曾小明", "欧阳华", "王丽", "单", "张"])),
        "phone": column("phone", valid_phone),
        "preferred_dialect": column(
            "preferred_dialect", st.sampled_from(["mandarin", "cantonese", "english"])
        ),
        "time_zone": column("time_zone", st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", ""])),
        "voice_opt_out": column("voice_opt_out", st.sampled_from([0, 0, 0, 1, False, True])),
    }
    notice = {
        "notice_type": notice_type,
        "variables": column("variables", _variables(notice_type)),
        "due_date": column(
            "due_date", st.integers(0, 3).map(lambda n: (DAY + dt.timedelta(days=n)).isoformat())
        ),
        "status": column("status", st.sampled_from(["due", "due", "due", "sent"])),
    }
    return customer, notice


class AcceptingGateway:
    """Accepts every well-formed call; refuses what a real gateway would refuse."""

    name = "fuzz"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def place_call(self, request: CallRequest) -> CallStatus:
        if not (request.to.startswith("+") and request.to[1:].isdigit()):
            raise GatewayPermanentError("invalid_number")
        self.calls[request.idempotency_key] += 1
        return CallStatus(
            f"fz-{request.idempotency_key}", request.idempotency_key, CallState.QUEUED
        )

    def find_call(self, idempotency_key: str, *, to=None, since=None) -> CallStatus | None:
        return None

    def call_status(self, call_id: str) -> CallStatus:
        raise NotImplementedError


# Columns the CRM declares NOT NULL: SQLite enforces that much, so they get text instead.
NOT_NULL = {"name", "preferred_dialect", "time_zone", "voice_opt_out"} | {
    "notice_type",
    "variables",
    "due_date",
    "status",
}


def _sqlite_value(column: str, value: Any) -> Any:
    """What a careless import stores: the value itself (sqlite3 adapts bool to int;
    SQLite stores NaN as NULL), except NULL where the schema forbids it."""
    is_null = value is None or (isinstance(value, float) and math.isnan(value))
    if is_null and column in NOT_NULL:
        return "" if value is None else "NaN"
    return value


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    path = tmp_path_factory.mktemp("fuzz") / "crm.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _fast(dbapi_connection, _record) -> None:  # a test database: no fsync per commit
        dbapi_connection.execute("PRAGMA synchronous=OFF")
        dbapi_connection.execute("PRAGMA journal_mode=MEMORY")

    demo_crm.create_schema(engine)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    Path(str(path) + ".stats.json").write_text(
        json.dumps({"stats": STATS, "reasons": REASONS}, indent=2, sort_keys=True)
    )


@pytest.fixture(scope="module")
def composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE)


def _reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in (
            "dispatch_ledger",
            "notice_dial_claims",
            "call_attempts",
            "notice_voice_audit",
            "notices",
            "customers",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")


def _insert(engine: sa.Engine, rows: list[tuple[dict, dict]]) -> None:
    with engine.begin() as conn:
        for n, (customer, notice) in enumerate(rows, start=1):
            columns = ["id", *customer]
            conn.exec_driver_sql(
                f"INSERT INTO customers ({', '.join(columns)}) VALUES "
                f"({', '.join('?' * len(columns))})",
                (n, *(_sqlite_value(k, v) for k, v in customer.items())),
            )
            columns = ["id", "customer_id", *notice]
            conn.exec_driver_sql(
                f"INSERT INTO notices ({', '.join(columns)}) VALUES "
                f"({', '.join('?' * len(columns))})",
                (n, n, *(_sqlite_value(k, v) for k, v in notice.items())),
            )


def _run_pipeline(engine: sa.Engine, composer: NoticeComposer) -> AcceptingGateway:
    with engine.connect() as conn:
        extracted = list(due_notices(conn, DAY, CONFIG))
    # The snapshot in S3 is JSON lines written with default=str (storage.write_jsonl).
    snapshot = [json.loads(json.dumps(r, ensure_ascii=False, default=str)) for r in extracted]
    decisions = eligibility.decide_all(
        snapshot, DAY, CONFIG.notice_types_of("all"), composer, CONFIG
    )
    with engine.begin() as conn:
        book = registry.load_consent_book(conn)
        decisions = assign_voices(decisions, book, CONFIG, DAY)
        waiting = batches.record_decisions(conn, decisions, DAY)
        batches.batch_items(waiting, {d.notice_id: d for d in decisions}, DAY)
        # Synthesis is another suite's: every waiting row gets its audio.
        for row in waiting:
            ledger.transition(conn, row.id, LedgerState.SYNTHESIZED, audio_key=f"a/{row.id}.wav")
    gateway = AcceptingGateway()
    ctx = dialer.DialContext(
        gateway=gateway,
        audio_url=lambda key: f"http://audio.example/{key}",
        config=CONFIG,
        now=lambda: NOON_UTC,
        rate_limiter=ratelimit.RateLimiter(1e6),
    )
    with engine.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
    counts = dialer.dial_rows(engine, engine, rows, ctx)
    STATS["dialed"] += counts.dialed
    STATS["extracted"] += len(extracted)
    return gateway


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # A failing example is reported as generated: shrinking 20 rows costs minutes.
    phases=[Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(rows=st.lists(crm_row(), min_size=ROWS_PER_EXAMPLE, max_size=ROWS_PER_EXAMPLE))
def test_every_bad_row_ends_with_a_reason_and_nothing_else_stops(crm, composer, rows):
    _reset(crm)
    _insert(crm, rows)
    STATS["rows"] += len(rows)
    gateway = _run_pipeline(crm, composer)  # any exception fails the example
    with crm.connect() as conn:
        ledger_rows = ledger.rows_for_date(conn, DAY)
        due = conn.exec_driver_sql("SELECT id FROM notices WHERE status = 'due'").scalars().all()
    by_notice = Counter(r.notice_id for r in ledger_rows)
    assert max(by_notice.values(), default=1) == 1
    assert set(by_notice) <= set(due)
    for row in ledger_rows:
        assert row.state in {"skipped", "dialed", "failed", "synthesized"}, row.state
        if row.state in ("skipped", "failed"):
            assert row.reason_code in KNOWN_REASONS, (row.notice_id, row.reason_code)
        if row.state == "synthesized":  # waits: calling hours or caps, with its reason
            assert row.next_attempt_at is not None
        REASONS[row.reason_code or row.state] += 1
    assert max(gateway.calls.values(), default=1) == 1  # no key sent twice


def test_the_fuzz_ran_over_ten_thousand_rows_with_every_kind_of_outcome():
    # Runs after the property above (file order): its figures are in STATS and REASONS.
    if STATS["rows"] == 0:
        pytest.fail("the fuzz property above did not run: run the whole file")
    assert STATS["rows"] >= 10_000
    assert STATS["dialed"] > 0 and STATS["extracted"] > STATS["dialed"]
    for reason in (
        Reason.INVALID_PHONE,
        Reason.PHONE_NON_ASCII_DIGITS,
        Reason.INVALID_DUE_DATE,
        Reason.INVALID_TIME_ZONE,
        Reason.INVALID_OPT_OUT,
        Reason.UNKNOWN_NOTICE_TYPE,
        Reason.INVALID_VARIABLES_JSON,
    ):
        assert REASONS[reason] > 0, (reason, REASONS)
