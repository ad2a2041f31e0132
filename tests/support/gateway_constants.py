"""Constants and key pickers shared by the gateway tests."""

from __future__ import annotations

from collections.abc import Collection

from voice_notify_dev import faults
from voice_notify_dev.faults import FAULT_NAMES, parse_faults
from voice_notify_dev.simulator import Outcome, draw_outcome

FAULT_SEED = 7
ALL_FAULTS_SPEC = ",".join(f"{name}=0.5" for name in FAULT_NAMES)
FAULT_DELAY_S = 1.0
CALL_SECONDS = 0.3
CALLBACK_SECRET = "test-callback-secret"
TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000001"
TWILIO_AUTH_TOKEN = "test-twilio-auth-token"


FAULT_PLAN = parse_faults(ALL_FAULTS_SPEC)
REQUEST_FAULTS = (
    faults.ERROR_BEFORE_ACCEPT,
    faults.ERROR_AFTER_ACCEPT,
    faults.TIMEOUT_AFTER_ACCEPT,
    faults.SLOW_AUDIO_FETCH,
)


def drawn_faults(key: str, attempt: int, names: Collection[str]) -> set[str]:
    """The faults among ``names`` the faulty simulator draws for this key and attempt."""
    return {name for name in names if FAULT_PLAN.fires(FAULT_SEED, key, attempt, name)}


def pick_key(
    prefix: str,
    *attempts: Collection[str],
    callbacks: Collection[str] | None = None,
    outcomes: Collection[Outcome] | None = None,
) -> str:
    """The first ``prefix-N`` key whose draws give exactly these faults.

    :param attempts: the request faults of attempt 1, 2, ...
    :param callbacks: the callback faults of the call (drawn with attempt 1)
    :param outcomes: outcomes the call may end with
    """
    for n in range(1_000_000):
        key = f"{prefix}-{n}"
        if outcomes is not None and draw_outcome(FAULT_SEED, key) not in outcomes:
            continue
        if any(
            drawn_faults(key, attempt, REQUEST_FAULTS) != set(wanted)
            for attempt, wanted in enumerate(attempts, start=1)
        ):
            continue
        if callbacks is None or drawn_faults(key, 1, faults.CALLBACK_FAULTS) == set(callbacks):
            return key
    raise AssertionError(f"no key draws {attempts} {callbacks} {outcomes}")
