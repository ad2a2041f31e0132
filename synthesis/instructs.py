"""The CosyVoice3 instruction catalogue (``include/cosyvoice3/instructs.yaml``).

A voice spec names an instruction by key (``sichuan``, ``soft``, ...); the catalogue
holds the sentence the model was trained on and whether it may be used on a notice.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from functools import cache

import yaml

from synthesis.text.paths import INCLUDE_DIR

#: The system prompt CosyVoice3 expects before an instruction or a prompt transcript.
SYSTEM_PREFIX = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"


class UnknownInstruct(KeyError):
    """The voice spec names an instruction the catalogue does not hold (or forbids)."""


@dataclass(frozen=True)
class Instruct:
    """One instruction: ``key`` (``sichuan``), its ``kind`` and the sentence itself."""

    key: str
    kind: str  # dialect, tone or style
    text: str
    notices: bool = True

    @property
    def instruct_text(self) -> str:
        """The ``instruct_text`` argument of ``inference_instruct2``."""
        return f"{SYSTEM_PREFIX} {self.text}{END_OF_PROMPT}"


@dataclass(frozen=True)
class InstructCatalogue:
    entries: dict[str, Instruct]

    @classmethod
    def load(cls, path: pathlib.Path) -> InstructCatalogue:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries: dict[str, Instruct] = {}
        for kind, plural in (("dialect", "dialects"), ("tone", "tones"), ("style", "styles")):
            for key, value in (raw.get(plural) or {}).items():
                if isinstance(value, dict):
                    entries[key] = Instruct(key, kind, str(value["text"]), bool(value["notices"]))
                else:
                    entries[key] = Instruct(key, kind, str(value))
        return cls(entries)

    def for_notice(self, key: str) -> Instruct:
        """The instruction ``key`` for a customer notice; :class:`UnknownInstruct` otherwise."""
        entry = self.entries.get(key)
        if entry is None or not entry.notices:
            raise UnknownInstruct(key)
        return entry

    def of_kind(self, kind: str) -> list[Instruct]:
        return [entry for entry in self.entries.values() if entry.kind == kind]


def include_dir() -> pathlib.Path:
    configured = os.environ.get("VOICE_NOTIFY_INCLUDE_DIR")
    return pathlib.Path(configured) if configured else INCLUDE_DIR


@cache
def default_catalogue() -> InstructCatalogue:
    """The catalogue under the include folder, read once per process."""
    return InstructCatalogue.load(include_dir() / "cosyvoice3" / "instructs.yaml")
