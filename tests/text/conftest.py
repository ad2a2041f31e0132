from __future__ import annotations

import pathlib

import pytest

from synthesis.text import NoticeComposer

REPO = pathlib.Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"
DATA = REPO / "tests" / "data" / "text"


@pytest.fixture(scope="session")
def composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE)


@pytest.fixture(scope="session")
def decimal_composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE, money_style="decimal")


@pytest.fixture
def context() -> dict[str, str]:
    return {
        "organization": "招商银行",
        "customer_name": "曾小明",
        "confirm_key": "1",
        "optout_key": "9",
        "service_phone": "95555",
    }


REPAYMENT = {"amount": "3280.50", "due_date": "2026-12-03", "card_tail": "0427"}
APPOINTMENT = {
    "appointment_date": "2026-12-03",
    "appointment_time": "15:30",
    "department": "心内科",
}
PENSION = {"amount": 2000, "arrival_date": "2026-01-15"}
POLICY = {"policy_no": "P2026A0815", "premium": 1288.05, "expiry_date": "2026-12-31"}
ALL_NOTICES = {
    "repayment_reminder": REPAYMENT,
    "appointment_confirmation": APPOINTMENT,
    "pension_arrival": PENSION,
    "policy_renewal": POLICY,
}


@pytest.fixture
def include_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A writable copy of include/ (catalogue, templates, lexicons) for variants."""
    target = tmp_path / "include"
    for path in [INCLUDE / "notice_types.yaml", *(INCLUDE / "lexicons").iterdir()]:
        destination = target / path.relative_to(INCLUDE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(path.read_bytes())
    for path in (INCLUDE / "templates").rglob("*.j2"):
        destination = target / path.relative_to(INCLUDE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(path.read_bytes())
    return target
