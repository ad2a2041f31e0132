"""The demo CRM: a schema that works on SQLite, PostgreSQL and MariaDB, and a seed.

A bank's real CRM has its own schema; voice-notify reaches it only through the
SQL files in ``include/sql/``. This module exists so that the demo, the tests
and a developer's laptop have a CRM shaped like the real thing, with the dirty
rows real CRMs hold (malformed phones, missing variables, unknown notice types,
over-long free text).

Run ``python -m voice_notify_dev.demo_crm --url sqlite:///.demo/crm.sqlite`` to
create and seed one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Unicode(64), nullable=False),
    sa.Column("phone", sa.String(32)),
    sa.Column("province", sa.Unicode(32)),
    sa.Column("city", sa.Unicode(32)),
    sa.Column("birth_year", sa.Integer),
    sa.Column("preferred_dialect", sa.String(16), nullable=False, server_default="mandarin"),
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="Asia/Shanghai"),
    sa.Column("voice_opt_out", sa.Boolean, nullable=False, server_default=sa.false()),
    # Consent to automated voice calls, which a notice type whose legal basis is consent
    # needs (the campaign file's consent_basis).
    sa.Column("voice_consent", sa.Boolean, nullable=False, server_default=sa.true()),
)

notices = sa.Table(
    "notices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("notice_type", sa.String(48), nullable=False),
    # Typed values per notice type; the catalogue in include/notice_types.yaml
    # says what each one is (money, date, code, ...).
    sa.Column("variables", sa.UnicodeText, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="due"),
    sa.Column("status_reason", sa.String(64)),
    sa.Column("status_updated_at", sa.DateTime),
    sa.Index("ix_notices_status_due", "status", "due_date"),
)

contact_attempts = sa.Table(
    "contact_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", sa.Integer, sa.ForeignKey("notices.id"), nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("attempt_no", sa.Integer, nullable=False),
    sa.Column("call_id", sa.String(64)),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("audio_key", sa.String(255)),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    sa.UniqueConstraint("notice_id", "campaign_date", "attempt_no", name="uq_contact_attempt"),
)

# Surnames weighted roughly by frequency, plus the polyphonic and compound ones
# a text-to-speech engine gets wrong unless told.
_COMMON_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_POLYPHONIC_SURNAMES = ["曾", "单", "解", "仇", "查", "区", "朴", "盖", "乐", "缪", "种", "华"]
_COMPOUND_SURNAMES = ["尉迟", "欧阳", "司马", "诸葛", "上官", "万俟", "令狐", "长孙"]
_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文辉斌鹏飞宇浩"
    "欣怡子涵梓轩雨萱思远佳琪博文晓东海燕春梅丹凤晨阳嘉欣婷婷乐行长重"
)
_PLACES = [
    ("北京", "北京", "mandarin", "Asia/Shanghai"),
    ("上海", "上海", "shanghai", "Asia/Shanghai"),
    ("广东", "广州", "cantonese", "Asia/Shanghai"),
    ("广东", "深圳", "mandarin", "Asia/Shanghai"),
    ("四川", "成都", "sichuan", "Asia/Shanghai"),
    ("重庆", "重庆", "sichuan", "Asia/Shanghai"),
    ("山东", "济南", "shandong", "Asia/Shanghai"),
    ("河南", "郑州", "henan", "Asia/Shanghai"),
    ("湖北", "武汉", "hubei", "Asia/Shanghai"),
    ("黑龙江", "哈尔滨", "dongbei", "Asia/Shanghai"),
    ("新疆", "乌鲁木齐", "mandarin", "Asia/Urumqi"),
    ("香港", "香港", "cantonese", "Asia/Hong_Kong"),
    ("浙江", "杭州", "mandarin", "Asia/Shanghai"),
    ("江苏", "南京", "mandarin", "Asia/Shanghai"),
]
_DEPARTMENTS = ["心内科", "消化内科", "口腔科", "眼科", "骨科", "皮肤科", "妇产科", "儿科"]

NOTICE_TYPES = (
    "repayment_reminder",
    "appointment_confirmation",
    "pension_arrival",
    "policy_renewal",
)


@dataclass(frozen=True)
class SeedSpec:
    """How big and where in time the demo CRM is.

    :param anchor_date: the date the due dates are spread around (the demo uses today)
    :param due_days: due dates fall in ``anchor + [first, last)`` days (``(0, 1)``: all on
        the anchor date, as ``bench_scale`` wants)
    :param unique_names: no two customers share a name (large seeds; the demo's 600
        customers keep the names they always had)
    :param dirty_rows: the deliberate bad rows (malformed phones, missing variables, ...);
        without them the CRM holds exactly ``customers`` notices
    """

    anchor_date: dt.date
    customers: int = 600
    seed: int = 20261126
    due_days: tuple[int, int] = (-3, 21)
    unique_names: bool = False
    dirty_rows: bool = True

    def __post_init__(self) -> None:
        if self.dirty_rows and self.customers < 50:
            raise ValueError("the seed needs at least 50 customers to place every kind of row")
        if self.customers < 1:
            raise ValueError("the seed needs at least one customer")
        if self.due_days[0] >= self.due_days[1]:
            raise ValueError("due_days must be a non-empty range (first, last)")


def _name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        surname = rng.choice(_COMPOUND_SURNAMES)
    elif roll < 0.25:
        surname = rng.choice(_POLYPHONIC_SURNAMES)
    else:
        surname = rng.choice(_COMMON_SURNAMES)
    given = "".join(rng.choice(_GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    return surname + given


# Mobile prefixes in service on the mainland (numbering plan), so every
# generated number is valid and only the deliberate bad rows are not.
_MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
]


def _phone(rng: random.Random) -> str:
    number = f"{rng.choice(_MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
    style = rng.random()
    if style < 0.15:
        return f"+86 {number[:3]} {number[3:7]} {number[7:]}"
    if style < 0.25:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    return number


def _money(rng: random.Random, low: int, high: int) -> str:
    cents = rng.choice((0, 0, 50, rng.randrange(100)))
    return f"{rng.randrange(low, high)}.{cents:02d}"


def _variables(rng: random.Random, notice_type: str, due: dt.date) -> dict[str, object]:
    if notice_type == "repayment_reminder":
        return {
            "amount": _money(rng, 200, 50000),
            "due_date": due.isoformat(),
            "card_tail": f"{rng.randrange(10000):04d}",
        }
    if notice_type == "appointment_confirmation":
        return {
            "appointment_date": due.isoformat(),
            "appointment_time": f"{rng.choice((8, 9, 10, 14, 15, 16))}:"
            f"{rng.choice((0, 15, 30, 45)):02d}",
            "department": rng.choice(_DEPARTMENTS),
        }
    if notice_type == "pension_arrival":
        return {"amount": _money(rng, 1500, 9000), "arrival_date": due.isoformat()}
    return {
        "policy_no": f"P{due.year}{rng.choice('ABCDEFGH')}{rng.randrange(10000):04d}",
        "premium": _money(rng, 800, 20000),
        "expiry_date": due.isoformat(),
    }


def _unique_name(rng: random.Random, taken: set[str]) -> str:
    """A name no earlier customer has: redrawn, then a third given character added."""
    name = _name(rng)
    while name in taken:
        name = _name(rng)
        if name in taken:
            name += rng.choice(_GIVEN_CHARS)
    taken.add(name)
    return name


def generate(spec: SeedSpec) -> tuple[list[dict], list[dict]]:
    """Customers and notices, the same for the same spec on every machine."""
    rng = random.Random(spec.seed)
    taken: set[str] = set()
    customer_rows = []
    for cid in range(1, spec.customers + 1):
        province, city, dialect, tz = rng.choice(_PLACES)
        customer_rows.append(
            {
                "id": cid,
                "name": _unique_name(rng, taken) if spec.unique_names else _name(rng),
                "phone": _phone(rng),
                "province": province,
                "city": city,
                "birth_year": rng.randrange(1940, 2004),
                "preferred_dialect": "english" if rng.random() < 0.03 else dialect,
                "time_zone": tz,
                "voice_opt_out": rng.random() < 0.05,
            }
        )
    notice_rows = []
    for nid, customer in enumerate(customer_rows, start=1):
        notice_type = NOTICE_TYPES[rng.randrange(len(NOTICE_TYPES))]
        due = spec.anchor_date + dt.timedelta(days=rng.randrange(*spec.due_days))
        notice_rows.append(
            {
                "id": nid,
                "customer_id": customer["id"],
                "notice_type": notice_type,
                "variables": _variables(rng, notice_type, due),
                "due_date": due,
            }
        )
    if spec.dirty_rows:
        _add_dirty_rows(spec, customer_rows, notice_rows)
    for row in notice_rows:
        row["variables"] = json.dumps(row["variables"], ensure_ascii=False, sort_keys=True)
    return customer_rows, notice_rows


def _add_dirty_rows(spec: SeedSpec, customer_rows: list[dict], notice_rows: list[dict]) -> None:
    """Rows a real CRM holds and the pipeline must survive, all due on the anchor date."""
    anchor = spec.anchor_date
    bad_phones = ["138-1234-56", "not a number", "", "+1 555 0100", "0000000000"]
    for offset, phone in enumerate(bad_phones):
        customer_rows[offset]["phone"] = phone or None
        customer_rows[offset]["voice_opt_out"] = False
        notice_rows[offset].update(
            notice_type="repayment_reminder",
            due_date=anchor,
            variables=_variables(random.Random(offset), "repayment_reminder", anchor),
        )
    next_id = len(notice_rows) + 1

    def add(customer_id: int, notice_type: str, variables: dict[str, object]) -> None:
        nonlocal next_id
        notice_rows.append(
            {
                "id": next_id,
                "customer_id": customer_id,
                "notice_type": notice_type,
                "variables": variables,
                "due_date": anchor,
            }
        )
        next_id += 1

    clean = [c["id"] for c in customer_rows[10:40] if not c["voice_opt_out"]]
    add(clean[0], "repayment_reminder", {"due_date": anchor.isoformat(), "card_tail": "0427"})
    add(clean[1], "pension_arrival", {"arrival_date": anchor.isoformat()})
    add(clean[2], "loan_offer", {"amount": "50000.00"})
    add(clean[3], "", {})
    add(
        clean[4],
        "appointment_confirmation",
        {
            "appointment_date": anchor.isoformat(),
            "appointment_time": "09:30",
            "department": "请携带身份证、医保卡和既往病历资料" * 20,
        },
    )
    add(clean[5], "repayment_reminder", {"amount": "三千块", "due_date": anchor.isoformat()})
    add(
        clean[6],
        "policy_renewal",
        {"policy_no": "P2026A0815", "premium": "1,280.00", "expiry_date": "2026-13-45"},
    )
    # Every notice type at least once on the anchor date, from customers who can be called.
    for customer_id, notice_type in zip(clean[10:14], NOTICE_TYPES, strict=True):
        add(customer_id, notice_type, _variables(random.Random(customer_id), notice_type, anchor))


def create_schema(engine: sa.Engine) -> None:
    """Create the demo CRM tables (no-op where they exist)."""
    metadata.create_all(engine)


def seed(engine: sa.Engine, spec: SeedSpec) -> dict[str, int]:
    """Create the schema and load the seed unless the CRM already holds customers.

    A CRM that is already seeded is left alone: its statuses are the history a
    re-run of the demo must respect.
    """
    create_schema(engine)
    with engine.begin() as conn:
        existing = conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        if existing:
            return {"customers": existing, "notices": 0, "seeded": 0}
        customer_rows, notice_rows = generate(spec)
        # In slices: one statement of 100,000 rows is more than some drivers take at once.
        for table, rows in ((customers, customer_rows), (notices, notice_rows)):
            for start in range(0, len(rows), 10_000):
                conn.execute(table.insert(), rows[start : start + 10_000])
    return {"customers": len(customer_rows), "notices": len(notice_rows), "seeded": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the CRM database")
    parser.add_argument("--anchor-date", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--customers", type=int, default=600)
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.url)
    result = seed(engine, SeedSpec(anchor_date=args.anchor_date, customers=args.customers))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
