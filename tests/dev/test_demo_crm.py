from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import replace

import sqlalchemy as sa

from voice_notify.phone import InvalidPhoneNumber, to_e164
from voice_notify_dev import demo_crm

ANCHOR = dt.date(2026, 11, 26)


def test_seed_is_deterministic() -> None:
    spec = demo_crm.SeedSpec(anchor_date=ANCHOR)
    assert demo_crm.generate(spec) == demo_crm.generate(spec)
    other = demo_crm.generate(demo_crm.SeedSpec(anchor_date=ANCHOR, seed=1))
    assert other != demo_crm.generate(spec)


def test_seed_holds_every_kind_of_row_a_real_crm_has() -> None:
    customers, notices = demo_crm.generate(demo_crm.SeedSpec(anchor_date=ANCHOR))
    assert len(customers) >= 500
    names = [c["name"] for c in customers]
    for surname in ("曾", "单", "解", "仇", "查", "区"):
        assert any(n.startswith(surname) for n in names), surname
    assert any(n[:2] in ("尉迟", "欧阳", "司马", "诸葛", "上官", "万俟") for n in names)
    assert sum(c["voice_opt_out"] for c in customers) >= 10
    types = Counter(n["notice_type"] for n in notices)
    for notice_type in demo_crm.NOTICE_TYPES:
        assert types[notice_type] > 20
    assert types["loan_offer"] == 1 and types[""] == 1  # unknown types

    invalid_phones = 0
    for c in customers:
        try:
            to_e164(c["phone"])
        except InvalidPhoneNumber:
            invalid_phones += 1
    assert invalid_phones == 5  # exactly the deliberate ones
    variables = [json.loads(n["variables"]) for n in notices]
    assert any(
        n["notice_type"] == "repayment_reminder" and "amount" not in v
        for n, v in zip(notices, variables, strict=True)
    )
    assert any(len(str(v.get("department", ""))) > 200 for v in variables)
    # Every dirty row is due on the anchor date, so today's campaign meets it.
    assert all(n["due_date"] == ANCHOR for n in notices[-11:])


def test_seeding_twice_keeps_the_crm_history(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    first = demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=ANCHOR))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE notices SET status = 'delivered' WHERE id = 7"))
    second = demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=ANCHOR))
    assert first["seeded"] == 1 and second["seeded"] == 0
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT status FROM notices WHERE id = 7")).scalar() == "delivered"
        )


def test_a_large_seed_on_one_date_with_unique_names() -> None:
    spec = demo_crm.SeedSpec(
        anchor_date=ANCHOR, customers=30, due_days=(0, 1), unique_names=True, dirty_rows=False
    )
    customers, notices = demo_crm.generate(spec)
    assert len(customers) == len(notices) == 30
    assert {n["due_date"] for n in notices} == {ANCHOR}
    names = [c["name"] for c in demo_crm.generate(replace(spec, customers=20_000))[0]]
    assert len(set(names)) == len(names) == 20_000


def test_the_demo_seed_is_what_it_always_was() -> None:
    spec = demo_crm.SeedSpec(anchor_date=ANCHOR)
    default = demo_crm.generate(spec)
    explicit = demo_crm.generate(
        replace(spec, due_days=(-3, 21), unique_names=False, dirty_rows=True)
    )
    assert default == explicit
