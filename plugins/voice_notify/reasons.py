"""Reason codes the pipeline records per notice (ledger ``reason_code`` and the
CRM's ``status_reason``). Codes are stable: reports and CRM dashboards key on them.

The text frontend adds its own codes (``synthesis.text.REASON_CODES``:
``missing_variable``, ``invalid_variable``, ``text_too_long``, ...), and the
worker's per-item codes arrive prefixed ``synthesis_``.
"""

from __future__ import annotations

OPTED_OUT = "opted_out"
# The notice type's legal basis is consent and the CRM shows none for the customer.
NO_CUSTOMER_CONSENT = "no_customer_consent"
INVALID_PHONE = "invalid_phone"
INVALID_VARIABLES_JSON = "invalid_variables_json"
UNKNOWN_NOTICE_TYPE = "unknown_notice_type"
ALREADY_CONTACTED = "already_contacted"  # another campaign date holds the dial claim
OPTED_OUT_BEFORE_DIAL = "opted_out_before_dial"
NOTICE_NO_LONGER_DUE = "notice_no_longer_due"
GATEWAY_REJECTED = "gateway_rejected"
SYNTHESIS_PREFIX = "synthesis_"
SYNTHESIS_RESULT_MISSING = "synthesis_result_missing"

# Call outcomes (ledger ``outcome``) and the reason a notice failed when unanswered.
CALL_NO_ANSWER = "no_answer"
CALL_BUSY = "busy"
CALL_FAILED = "call_failed"
CALL_CANCELED = "call_canceled"

# Compliance gate (plan time and dial time).
ON_DO_NOT_CALL = "do_not_call"
OUTSIDE_CALLING_HOURS = "outside_calling_hours"  # a wait, not terminal
CAP_REACHED = "cap_reached"  # a wait, not terminal
REDIAL_EXHAUSTED = "redial_exhausted"
