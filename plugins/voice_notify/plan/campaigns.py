"""Campaign configuration (``include/campaigns.yaml`` or ``VOICE_NOTIFY_CAMPAIGNS_FILE``),
validated once on load: notice types, calling hours, caps and redial policy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from voice_notify.voices.registry import EMOTIONS


def _time(text: str) -> dt.time | None:
    """``HH:MM``; ``24:00`` is the end of the day (None)."""
    return None if text == "24:00" else dt.time.fromisoformat(text)


@dataclass(frozen=True)
class CallingHours:
    """The daily window, in the customer's time zone, in which calls may start.

    :param quiet: a break inside the window (e.g. 12:00-14:00) with no calls
    """

    start: dt.time
    end: dt.time | None  # None: until midnight ("24:00")
    quiet: tuple[dt.time, dt.time] | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end <= self.start:
            raise ValueError("calling_hours: end must be after start")
        if self.quiet is not None and not self.quiet[0] < self.quiet[1]:
            raise ValueError("calling_hours: quiet must be a start-end pair")

    def allows(self, local_time: dt.time) -> bool:
        if local_time < self.start or (self.end is not None and local_time >= self.end):
            return False
        return not (self.quiet and self.quiet[0] <= local_time < self.quiet[1])

    def next_start(self, local: dt.datetime) -> dt.datetime:
        """The first moment at or after ``local`` (aware) at which a call may start."""
        candidate = local
        for _ in range(4):  # today's window, after the quiet break, or tomorrow's
            if self.allows(candidate.time()):
                return candidate
            if self.quiet and self.quiet[0] <= candidate.time() < self.quiet[1]:
                candidate = candidate.replace(
                    hour=self.quiet[1].hour, minute=self.quiet[1].minute, second=0, microsecond=0
                )
            elif candidate.time() < self.start:
                candidate = candidate.replace(
                    hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0
                )
            else:
                tomorrow = candidate + dt.timedelta(days=1)
                candidate = tomorrow.replace(
                    hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0
                )
        return candidate


@dataclass(frozen=True)
class Caps:
    """How many call attempts a customer may get in rolling windows (None: no limit)."""

    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    per_week: int | None = None

    def windows(self) -> list[tuple[dt.timedelta, int]]:
        spans = {
            "per_minute": dt.timedelta(minutes=1),
            "per_hour": dt.timedelta(hours=1),
            "per_day": dt.timedelta(days=1),
            "per_week": dt.timedelta(days=7),
        }
        return [
            (span, getattr(self, name))
            for name, span in spans.items()
            if getattr(self, name) is not None
        ]


@dataclass(frozen=True)
class RedialPolicy:
    """Which unanswered outcomes are tried again, how soon, and how often in all.

    :param after_minutes: wait at least this long after the failed attempt
    :param max_attempts: attempts in all, the first one included
    """

    on: frozenset[str] = frozenset()
    after_minutes: int = 120
    max_attempts: int = 1

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.after_minutes < 0:
            raise ValueError("redial: max_attempts >= 1 and after_minutes >= 0")


CONSENT_BASES = frozenset({"contract", "legal_obligation", "consent"})


@dataclass(frozen=True)
class NoticeTypeConfig:
    """Who calls for a notice type, how early, under which extra caps and redials.

    :param lookahead_days: customers are called this many days before the due date at most
    """

    name: str
    organization: str
    service_phone: str
    lookahead_days: int
    caps: Caps = field(default_factory=Caps)
    redial: RedialPolicy = field(default_factory=RedialPolicy)
    # A cloned agent voice: a profile id, "auto" (any profile whose consent covers
    # the notice), or None for the engine's own standard voice.
    voice_profile: str | None = None
    # Without a consenting cloned voice, speak in the standard voice (True) or
    # skip the notice with the consent refusal as its reason (False).
    standard_voice_fallback: bool = True
    # The legal basis for calling about this notice type (PIPL art. 13): a
    # contract, a legal obligation, or the customer's own consent, which the CRM
    # must then show (``voice_consent`` on the extracted row).
    consent_basis: str = "contract"
    # The enrolled emotion variant a cloned voice speaks this notice type in:
    # ``{"default": emotion, <age band>: emotion}`` (absent: the normal variant).
    tone: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.lookahead_days <= 60:
            raise ValueError(f"{self.name}: lookahead_days must be within 0..60")
        if self.consent_basis not in CONSENT_BASES:
            raise ValueError(f"{self.name}: consent_basis must be one of {sorted(CONSENT_BASES)}")
        unknown = sorted(set(self.tone.values()) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"{self.name}: tone names {unknown}; variants are {list(EMOTIONS)}")


@dataclass(frozen=True)
class CampaignConfig:
    confirm_key: str
    optout_key: str
    calling_hours: CallingHours
    caps: Caps
    campaigns: dict[str, tuple[str, ...]]
    notice_types: dict[str, NoticeTypeConfig]
    # Age bands by the customer's age on the campaign date: ``(band, minimum age)``,
    # oldest first; a customer younger than every band, or without a birth date, has none.
    age_bands: tuple[tuple[str, int], ...] = ()
    # One call per customer: per campaign, the pairs of notice types whose notices of one
    # customer on one date are spoken in one call (the first type of a pair leads: its
    # disclosure, greeting and closing). A campaign not listed merges nothing.
    merged_calls: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # The key that confirms the second notice of a merged call (the first: confirm_key).
    second_confirm_key: str = "2"

    def __post_init__(self) -> None:
        if self.second_confirm_key in (self.confirm_key, self.optout_key):
            raise ValueError("second_confirm_key must differ from confirm_key and optout_key")
        for campaign, pairs in self.merged_calls.items():
            if campaign not in self.campaigns:
                raise ValueError(f"merged_calls names unknown campaign {campaign!r}")
            for pair in pairs:
                if len(pair) != 2 or pair[0] == pair[1]:
                    raise ValueError(f"merged_calls.{campaign}: {list(pair)} is not a pair")
                outside = sorted(set(pair) - set(self.campaigns[campaign]))
                if outside:
                    raise ValueError(
                        f"merged_calls.{campaign}: {outside} not in the campaign's notice types"
                    )
        bands = {name for name, _ in self.age_bands}
        for notice_type in self.notice_types.values():
            unknown = sorted(set(notice_type.tone) - bands - {"default"})
            if unknown:
                raise ValueError(f"{notice_type.name}: tone names unknown age bands {unknown}")
        for campaign, types in self.campaigns.items():
            unknown = set(types) - set(self.notice_types)
            if unknown:
                raise ValueError(f"campaign {campaign!r} names unknown notice types {unknown}")
        if self.confirm_key == self.optout_key:
            raise ValueError("confirm_key and optout_key must differ")

    def notice_types_of(self, campaign: str) -> tuple[str, ...]:
        """The notice types a campaign covers; ``ValueError`` for an unknown campaign."""
        try:
            return self.campaigns[campaign]
        except KeyError:
            raise ValueError(
                f"unknown campaign {campaign!r}; known: {sorted(self.campaigns)}"
            ) from None

    def merge_pairs(self, campaign: str) -> tuple[tuple[str, str], ...]:
        """The notice-type pairs a campaign speaks in one call (empty: none, the default)."""
        return self.merged_calls.get(campaign, ())

    @property
    def max_lookahead_days(self) -> int:
        return max(t.lookahead_days for t in self.notice_types.values())

    def age_band(self, age: int | None) -> str | None:
        """The band of a customer of ``age`` years (None: no birth date, or below every band)."""
        if age is None:
            return None
        return next((name for name, minimum in self.age_bands if age >= minimum), None)

    def tone_for(self, notice_type: str, age: int | None) -> tuple[str, str]:
        """The emotion variant for a notice type and customer age, and the rule that chose it.

        The age band's entry wins over ``default``; without either, ``normal``.
        """
        tone = self.notice_types[notice_type].tone if notice_type in self.notice_types else {}
        band = self.age_band(age)
        if band is not None and band in tone:
            return tone[band], f"{notice_type}: {band}"
        if "default" in tone:
            return tone["default"], f"{notice_type}: default"
        return "normal", "no tone configured"


def _caps(raw: dict[str, Any] | None) -> Caps:
    raw = raw or {}
    unknown = set(raw) - {"per_minute", "per_hour", "per_day", "per_week"}
    if unknown:
        raise ValueError(f"unknown caps {sorted(unknown)}")
    return Caps(**{k: int(v) for k, v in raw.items()})


def _age_bands(raw: dict[str, Any] | None) -> tuple[tuple[str, int], ...]:
    bands = tuple(sorted(((str(k), int(v)) for k, v in (raw or {}).items()), key=lambda b: -b[1]))
    if any(minimum < 0 for _, minimum in bands):
        raise ValueError("age_bands: minimum ages are 0 or more")
    return bands


def _redial(raw: dict[str, Any] | None) -> RedialPolicy:
    raw = raw or {}
    unknown = set(raw) - {"outcomes", "after_minutes", "max_attempts"}
    if unknown:
        # (YAML reads a bare `on:` key as the boolean true: it must not pass silently.)
        raise ValueError(f"unknown redial settings {sorted(map(str, unknown))}")
    return RedialPolicy(
        on=frozenset(raw.get("outcomes", ())),
        after_minutes=int(raw.get("after_minutes", 120)),
        max_attempts=int(raw.get("max_attempts", 1)),
    )


@cache
def load_campaign_config(path: Path) -> CampaignConfig:
    """Read and validate a campaign file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    hours = raw["calling_hours"]
    quiet = hours.get("quiet")
    return CampaignConfig(
        confirm_key=str(raw["caller"]["confirm_key"]),
        optout_key=str(raw["caller"]["optout_key"]),
        calling_hours=CallingHours(
            start=_time(hours["start"]) or dt.time(0),
            end=_time(hours["end"]),
            quiet=(dt.time.fromisoformat(quiet[0]), dt.time.fromisoformat(quiet[1]))
            if quiet
            else None,
        ),
        caps=_caps(raw.get("caps")),
        campaigns={name: tuple(types) for name, types in raw["campaigns"].items()},
        notice_types={
            name: NoticeTypeConfig(
                name=name,
                organization=str(cfg["organization"]),
                service_phone=str(cfg["service_phone"]),
                lookahead_days=int(cfg["lookahead_days"]),
                caps=_caps(cfg.get("caps")),
                redial=_redial(cfg.get("redial")),
                voice_profile=cfg.get("voice_profile"),
                standard_voice_fallback=bool(cfg.get("standard_voice_fallback", True)),
                consent_basis=str(cfg.get("consent_basis", "<missing>")),
                tone={str(k): str(v) for k, v in (cfg.get("tone") or {}).items()},
            )
            for name, cfg in raw["notice_types"].items()
        },
        age_bands=_age_bands(raw.get("age_bands")),
        merged_calls={
            str(campaign): tuple(tuple(str(t) for t in pair) for pair in pairs or ())
            for campaign, pairs in (raw.get("merged_calls") or {}).items()
        },
        second_confirm_key=str(raw["caller"].get("second_confirm_key", "2")),
    )
