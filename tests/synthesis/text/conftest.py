from __future__ import annotations

import pathlib

import pytest

from synthesis.text import NoticeComposer
from tests.synthesis.text.samples import INCLUDE


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
