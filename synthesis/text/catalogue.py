"""The notice catalogue (include/notice_types.yaml): notice types, variable types, limits."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

VARIABLE_TYPES = frozenset(
    {
        "person_name",
        "money",
        "date",
        "time",
        "phone",
        "percent",
        "count",
        "code",
        "free_text",
        "key",
    }
)
DEFAULT_MAX_TEXT_CHARS = 600
#: Applies when the catalogue gives no max_length for a value.
DEFAULT_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """One declared value: its name, type and longest accepted raw length."""

    name: str
    type: str
    max_length: int = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        if self.type not in VARIABLE_TYPES:
            raise ValueError(f"variable {self.name!r}: unknown type {self.type!r}")
        if self.max_length <= 0:
            raise ValueError(f"variable {self.name!r}: max_length must be positive")


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Notice types with their variables, the caller context fields and text limits."""

    notice_types: Mapping[str, tuple[VariableSpec, ...]]
    context: tuple[VariableSpec, ...]
    locales: tuple[str, ...]
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS

    @classmethod
    def load(cls, path: pathlib.Path) -> Catalogue:
        """Parse and validate ``notice_types.yaml``."""
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("notice_types"), dict):
            raise ValueError(f"{path}: expected a mapping with notice_types")
        return cls(
            notice_types={
                name: _specs(body.get("variables") or {})
                for name, body in raw["notice_types"].items()
            },
            context=_specs(raw.get("context") or {}),
            locales=tuple(raw.get("locales") or ("cmn", "yue", "en")),
            max_text_chars=int(raw.get("max_text_chars", DEFAULT_MAX_TEXT_CHARS)),
        )


def _specs(variables: Mapping[str, Any]) -> tuple[VariableSpec, ...]:
    return tuple(
        VariableSpec(
            name=name,
            type=str(body["type"]),
            max_length=int(body.get("max_length", DEFAULT_MAX_LENGTH)),
        )
        for name, body in variables.items()
    )
