"""Campaign configuration (``include/campaigns.yaml``), validated once on load."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml


@dataclass(frozen=True)
class NoticeTypeConfig:
    """Who calls for a notice type, and how early.

    :param lookahead_days: customers are called this many days before the due date at most
    """

    name: str
    organization: str
    service_phone: str
    lookahead_days: int

    def __post_init__(self) -> None:
        if not 0 <= self.lookahead_days <= 60:
            raise ValueError(f"{self.name}: lookahead_days must be within 0..60")


@dataclass(frozen=True)
class CallingHours:
    """The daily window, in the customer's time zone, in which calls may start."""

    start: dt.time
    end: dt.time | None  # None: until midnight ("24:00")

    def allows(self, local_time: dt.time) -> bool:
        return local_time >= self.start and (self.end is None or local_time < self.end)


@dataclass(frozen=True)
class CampaignConfig:
    confirm_key: str
    optout_key: str
    calling_hours: CallingHours
    campaigns: dict[str, tuple[str, ...]]
    notice_types: dict[str, NoticeTypeConfig]

    def __post_init__(self) -> None:
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

    @property
    def max_lookahead_days(self) -> int:
        return max(t.lookahead_days for t in self.notice_types.values())


def _parse_time(text: str) -> dt.time | None:
    if text == "24:00":
        return None
    return dt.time.fromisoformat(text)


@cache
def load_campaign_config(path: Path) -> CampaignConfig:
    """Read and validate the campaign file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    start = _parse_time(raw["calling_hours"]["start"])
    return CampaignConfig(
        confirm_key=str(raw["caller"]["confirm_key"]),
        optout_key=str(raw["caller"]["optout_key"]),
        calling_hours=CallingHours(
            start=start or dt.time(0), end=_parse_time(raw["calling_hours"]["end"])
        ),
        campaigns={name: tuple(types) for name, types in raw["campaigns"].items()},
        notice_types={
            name: NoticeTypeConfig(
                name=name,
                organization=str(cfg["organization"]),
                service_phone=str(cfg["service_phone"]),
                lookahead_days=int(cfg["lookahead_days"]),
            )
            for name, cfg in raw["notice_types"].items()
        },
    )
