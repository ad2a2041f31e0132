"""Reason codes the pipeline records per notice (ledger ``reason_code`` and the CRM's
``status_reason``). Codes are stable: reports and CRM dashboards key on them.

The text frontend adds its own codes (``synthesis.text.REASON_CODES``:
``missing_variable``, ``invalid_variable``, ``text_too_long``, ...), and the worker's
per-item codes arrive prefixed ``synthesis_`` (``SYNTHESIS_PREFIX``). Call outcomes
(``voice_notify.settle.outcomes.Outcome``) are the reason of a notice whose last call
did not reach the customer.
"""

from __future__ import annotations

from enum import StrEnum

SYNTHESIS_PREFIX = "synthesis_"


class Reason(StrEnum):
    """Why a notice was skipped, failed, or waits."""

    # Plan time: the notice cannot be spoken or the customer may not be called.
    OPTED_OUT = "opted_out"
    # The notice type's legal basis is consent and the CRM shows none for the customer.
    NO_CUSTOMER_CONSENT = "no_customer_consent"
    INVALID_PHONE = "invalid_phone"
    # Digits of a script other than ASCII (Arabic-Indic, Devanagari, circled...): refused
    # rather than guessed (full-width digits are folded to ASCII; see voice_notify.phone).
    PHONE_NON_ASCII_DIGITS = "phone_non_ascii_digits"
    INVALID_VARIABLES_JSON = "invalid_variables_json"
    UNKNOWN_NOTICE_TYPE = "unknown_notice_type"
    # A CRM field of the wrong type or form (voice_notify.extract.fields): the notice is
    # skipped rather than guessed at; an unreadable opt-out flag is never read as "no".
    INVALID_NOTICE_ID = "invalid_notice_id"  # the row cannot be keyed: logged, not recorded
    INVALID_CUSTOMER_ID = "invalid_customer_id"
    INVALID_DUE_DATE = "invalid_due_date"
    INVALID_TIME_ZONE = "invalid_time_zone"
    INVALID_OPT_OUT = "invalid_opt_out"
    INVALID_CONSENT = "invalid_consent"
    INVALID_CUSTOMER_NAME = "invalid_customer_name"
    # Another campaign date holds the notice's dial claim.
    ALREADY_CONTACTED = "already_contacted"
    # Dial time: what changed since the plan.
    OPTED_OUT_BEFORE_DIAL = "opted_out_before_dial"
    NOTICE_NO_LONGER_DUE = "notice_no_longer_due"
    ON_DO_NOT_CALL = "do_not_call"
    GATEWAY_REJECTED = "gateway_rejected"
    SYNTHESIS_RESULT_MISSING = "synthesis_result_missing"
    # Held, not terminal: a dry run synthesized the notice and placed no call; only a
    # real run of the date dials it (voice_notice_reconcile leaves it alone).
    DRY_RUN = "dry_run"
    # Waits, not terminal: the row is tried again at ``next_attempt_at``.
    OUTSIDE_CALLING_HOURS = "outside_calling_hours"
    CAP_REACHED = "cap_reached"
    # The last call of a notice did not reach the customer.
    CALL_NO_ANSWER = "no_answer"
    CALL_BUSY = "busy"
    CALL_FAILED = "call_failed"
    CALL_CANCELED = "call_canceled"
    # The callee declined the call (SIP 603 Decline and its kin): not redialled by default.
    CALL_DECLINED = "call_declined"
