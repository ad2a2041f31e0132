"""Fixtures of the synthesis tests: engines, a stand-in CosyVoice3, voice profiles on S3."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_cosyvoice import FakeCosyVoice3, make_model_dir

INCLUDE = Path(__file__).resolve().parents[2] / "include"


@pytest.fixture(scope="session")
def espeak():
    from synthesis.engines import make_engine

    engine = make_engine("espeak")
    engine.load()
    return engine


@pytest.fixture(scope="session")
def speaker_encoder():
    from synthesis.qc import SpeakerEncoder

    return SpeakerEncoder()


@pytest.fixture
def fake_cosyvoice(monkeypatch: pytest.MonkeyPatch) -> type[FakeCosyVoice3]:
    """``cosyvoice.cli.cosyvoice`` importable, with the stand-in as ``CosyVoice3``."""
    package = types.ModuleType("cosyvoice")
    cli = types.ModuleType("cosyvoice.cli")
    module = types.ModuleType("cosyvoice.cli.cosyvoice")
    module.CosyVoice3 = FakeCosyVoice3
    for name, value in (
        ("cosyvoice", package),
        ("cosyvoice.cli", cli),
        ("cosyvoice.cli.cosyvoice", module),
    ):
        monkeypatch.setitem(sys.modules, name, value)
    FakeCosyVoice3.instances.clear()
    return FakeCosyVoice3


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "models")


@pytest.fixture
def cosyvoice(fake_cosyvoice, model_dir: Path):
    from synthesis.engines.cosyvoice3 import CosyVoice3Engine

    engine = CosyVoice3Engine(model_dir)
    engine.load()
    return engine


@pytest.fixture
def store(s3_bucket: str):
    from synthesis.store import BatchStore

    return BatchStore(s3_bucket)


@pytest.fixture
def demo_profiles(store, espeak) -> list[str]:
    """The demo voice profiles published under ``voices/`` in the test bucket."""
    from synthesis.voices import publish_demo_profiles

    return publish_demo_profiles(store, espeak, INCLUDE)


@pytest.fixture
def synthesizer_factory(store, espeak, speaker_encoder, tmp_path: Path) -> Iterator:
    from synthesis.synthesizer import BatchSynthesizer, WorkerOptions

    made = []

    def make(engine=None, fallback=None, **options):
        synthesizer = BatchSynthesizer(
            engine or espeak,
            store,
            WorkerOptions(**options),
            fallback=fallback,
            workdir=tmp_path / f"voices-{len(made)}",
            speaker_encoder=speaker_encoder,
        )
        made.append(synthesizer)
        return synthesizer

    yield make
    for synthesizer in made:
        synthesizer.close()
