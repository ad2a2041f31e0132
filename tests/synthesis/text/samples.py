"""Sample notices and paths shared by the text frontend tests."""

from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[3]
INCLUDE = REPO / "include"
DATA = REPO / "tests" / "data" / "text"

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
