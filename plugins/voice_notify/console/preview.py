"""Preview before a campaign: a notice's text, markup, gate result and audio, nothing else.

The preview runs the plan's own code on one notice (``eligibility.decide``,
``voices.assign_voices`` with the campaign file's tone rules) and the dial-time checks
that need no call (opt-out, do-not-call, calling hours now, caps), then renders the audio
with the worker's own ``BatchSynthesizer`` on a :class:`PreviewStore`: voice profiles are
read from S3, everything the synthesizer writes stays in memory. Nothing is dialled,
nothing is written to the ledger, the CRM or S3.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from synthesis.manifest import BatchItem, VoiceSpec, item_seed
from voice_notify.plan import compliance, trail
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.eligibility import decide, locale_for
from voice_notify.plan.voices import assign_voices, customer_age
from voice_notify.reasons import Reason

#: A placeholder number for sample notices (the plan needs one that parses).
SAMPLE_PHONE = "+8613800138000"
_DIALECTS = {"cmn": "mandarin", "yue": "cantonese", "en": "english"}
_lock = threading.Lock()


@dataclass(frozen=True)
class PreviewRequest:
    """What the operator asks for: a notice type, locale, voice and variables, or a notice.

    :param voice: ``auto`` (as the campaign would choose), ``standard`` or a profile id
    :param emotion: ``auto`` (the campaign file's tone rule) or a variant name
    """

    notice_type: str = ""
    locale: str = "cmn"
    voice: str = "auto"
    emotion: str = "auto"
    variables: Mapping[str, Any] = field(default_factory=dict)
    customer_name: str = "王小明"
    age: int | None = None
    notice_id: int | None = None


@dataclass
class PreviewResult:
    request: PreviewRequest
    notice: dict[str, Any]  # the notice as the plan saw it (phone masked)
    plan: trail.GateEvaluation
    dial: trail.GateEvaluation | None
    voice: dict[str, Any]
    item: BatchItem | None
    text: dict[str, Any] | None = None
    audio: bytes | None = None
    synthesis: dict[str, Any] | None = None


def sample_notice(request: PreviewRequest, on: dt.date) -> dict[str, Any]:
    """A notice as the extract would give it, from the form's sample values."""
    born = on.year - request.age if request.age is not None else None
    return {
        "notice_id": 0,
        "notice_type": request.notice_type,
        "variables": dict(request.variables),
        "due_date": on.isoformat(),
        "customer_id": None,
        "customer_name": request.customer_name,
        "phone": SAMPLE_PHONE,
        "preferred_dialect": _DIALECTS.get(request.locale, "mandarin"),
        "time_zone": compliance.DEFAULT_ZONE,
        "voice_opt_out": False,
        "voice_consent": True,
        "birth_year": born,
    }


def plan_notice(
    notice: Mapping[str, Any],
    request: PreviewRequest,
    *,
    composer: Any,
    config: CampaignConfig,
    book: Any,
    on: dt.date,
) -> tuple[Any, trail.GateEvaluation]:
    """The plan's decision for one notice (with the form's voice and tone, if chosen)."""
    decision = decide(notice, composer, config)
    if decision.planned and request.notice_id is None:
        decision = replace(decision, locale=request.locale)
    ages = {decision.notice_id: customer_age(notice, on)}
    chosen = _choose_voice(decision, request, book, config, on, ages)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return chosen, trail.plan_evaluation(chosen, on, config, decided_at=now)


def _choose_voice(decision, request, book, config, on, ages):
    if not decision.planned or request.voice == "auto":
        decision = assign_voices([decision], book, config, on, ages)[0]
    elif request.voice == "standard":
        decision = replace(decision, voice=VoiceSpec("standard", decision.voice.instruct))
    else:
        consent = book.consent_for(request.voice, decision.notice_type, decision.locale, on)
        if not consent.allowed:
            return replace(decision, reason_code=consent.reason_code, consent=consent)
        emotion, rule = config.tone_for(decision.notice_type, ages.get(decision.notice_id))
        decision = replace(
            decision,
            voice=VoiceSpec(request.voice, None, None if emotion == "normal" else emotion),
            consent=consent,
            tone_rule=rule,
        )
    if decision.planned and request.emotion != "auto" and decision.voice.profile != "standard":
        if request.emotion != "normal" and request.emotion not in book.variants_of(
            decision.voice.profile
        ):
            return replace(decision, reason_code="voice_variant_missing")
        variant = None if request.emotion == "normal" else request.emotion
        decision = replace(
            decision,
            voice=replace(decision.voice, emotion=variant),
            tone_rule="chosen in the preview",
        )
    return decision


def dial_gate(
    notice: Mapping[str, Any],
    *,
    config: CampaignConfig,
    now: dt.datetime,
    blocked: bool,
    history: list[compliance.PastAttempt],
    still_due: bool = True,
) -> tuple[str, str | None, dt.datetime | None]:
    """The dial-time gate as it would answer now: ``(result, reason, until)``."""
    from voice_notify.phone import InvalidPhoneNumber, to_e164

    if not still_due:
        return "skip", Reason.NOTICE_NO_LONGER_DUE, None
    if notice.get("voice_opt_out"):
        return "skip", Reason.OPTED_OUT_BEFORE_DIAL, None
    try:
        number = to_e164(notice.get("phone"))
    except InvalidPhoneNumber:
        return "skip", Reason.INVALID_PHONE, None
    if blocked:
        return "skip", Reason.ON_DO_NOT_CALL, None
    zone = compliance.customer_zone(notice.get("time_zone"), number)
    verdict = compliance.hours_verdict(config.calling_hours, now, zone)
    if verdict.allowed:
        type_config = config.notice_types.get(notice.get("notice_type") or "")
        verdict = compliance.caps_verdict(
            config.caps,
            type_config.caps if type_config else compliance.Caps(),
            history,
            notice.get("notice_type") or "",
            now,
        )
    return verdict.kind.value, verdict.reason, verdict.until


def batch_item(decision: Any, on: dt.date) -> BatchItem:
    """The manifest item the plan would write for the decision (ledger id 0)."""
    return BatchItem(
        ledger_id=0,
        notice_id=decision.notice_id,
        campaign_date=on.isoformat(),
        notice_type=decision.notice_type,
        locale=decision.locale,
        segments=list(decision.segments),
        voice=decision.voice,
        seed=item_seed(decision.notice_id, on.isoformat()),
    )


class PreviewStore:
    """A store for one preview: reads voice profiles (and segment cache hits) from S3,
    keeps everything written in memory, and finds no finished audio to resume."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.objects: dict[str, bytes] = {}

    def read(self, key: str) -> bytes:
        if key in self.objects:
            return self.objects[key]
        return self._s3.read(key)

    def read_if_exists(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        if key in self.objects:
            return self.objects[key], {}
        return self._s3.read_if_exists(key)

    def head(self, key: str) -> dict[str, Any] | None:
        return None  # never resume: a preview always renders

    def write(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self.objects[key] = data


def synthesize(item: BatchItem, store: PreviewStore, engine_name: str) -> tuple[bytes, dict]:
    """Render one item with the worker's synthesizer; ``(telephone WAV, result)``.

    One preview at a time per process: the engines and the speaker encoder are not
    shared between threads.
    """
    from synthesis.engines import make_engine
    from synthesis.synthesizer import BatchSynthesizer, WorkerOptions

    with _lock:
        engine = make_engine(engine_name)
        engine.load()
        # A preview plays the telephone file: no master to encode.
        options = WorkerOptions(master_format="none")
        synthesizer = BatchSynthesizer(engine, store, options, fallback=None)
        try:
            synthesizer.plan([item])
            result = synthesizer.process(item)
            synthesizer.drain()
        finally:
            synthesizer.close()
    audio = store.objects.get(result.audio_key or "", b"")
    summary = json.loads(result.to_json())
    return audio, summary


def sample_variables(catalogue_path: Any, notice_type: str, on: dt.date) -> dict[str, Any]:
    """Plausible values for a notice type's variables (``include/notice_types.yaml``)."""
    import yaml

    raw = yaml.safe_load(catalogue_path.read_text(encoding="utf-8"))
    spec = (raw.get("notice_types") or {}).get(notice_type, {}).get("variables", {})
    examples = {
        "money": "1280.50",
        "date": (on + dt.timedelta(days=3)).isoformat(),
        "time": "09:30",
        "code": "6217",
        "free_text": "心内科",
        "count": "3",
        "percent": "3.5",
        "phone": "95555",
        "person_name": "王小明",
    }
    return {name: examples.get(v.get("type"), "示例") for name, v in spec.items()}


def default_locale(dialect: str | None) -> str:
    return locale_for(dialect)
