"""Carriers as they behave, played by SIPp (Debian's ``sip-tester``) against the call service.

Each case is a SIPp scenario in ``scenarios/`` acting as the carrier, with the media
recorded by the test's RTP peer (``media.py``). The cases run at once, one call service
per carrier (a service has one trunk), and are then checked one by one:

========================  ==============================================================
case                      expected
========================  ==============================================================
early media, shorter      183+SDP then 1.5 s of ringback: silence before the 200 OK, the
                          notice after it from its first sample, bit-exact; completed
early media, longer       the same with early media longer than the notice
post-dial delay 7 s       100 Trying, 180 after 7 s (setup timer 5 s): completed
post-dial delay 20 s      the same after 20 s: completed
post-dial give-up         100 Trying, then nothing: no_answer (post_dial_timeout), CANCEL
603 Decline               declined, outcome call_declined
PCMA-only answer          A-law on the wire, the notice complete; completed
DTMF from a second SSRC   the key 9 under another SSRC than the audio: completed, key 9,
                          outcome opted_out
========================  ==============================================================
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.gateway.sip.conftest import CONTEXT, ServiceFactory, migrated_sqlite, needs_baresip
from tests.gateway.sip.media import PCMA, RtpPeer, write_key_pcap
from tests.gateway.sip.notice_audio import render_notice
from tests.synthesis.text.samples import ALL_NOTICES
from voice_notify.db import schema
from voice_notify.gateway.base import CallRequest, CallState
from voice_notify.gateway.sip.audio import compare_audio, read_pcm
from voice_notify.gateway.sip.baresip import free_sip_port
from voice_notify.settle import outcomes as reconcile

pytestmark = [pytest.mark.integration, needs_baresip]

SCENARIOS = Path(__file__).parent / "scenarios"
# Real-world timers: the 7 s post-dial delay outlasts the setup timer.
TIMERS = {
    "setup_timeout_s": 5.0,
    "post_dial_timeout_s": 30.0,
    "ring_timeout_s": 10.0,
    "dtmf_grace_s": 1.0,
}


@dataclass
class Case:
    name: str
    scenario: str
    expected: tuple[CallState, str | None, str | None]  # state, error, key
    sets: dict[str, int] = field(default_factory=dict)
    peer: bool = True
    ringback: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    # filled in by the run
    result: dict[str, Any] = field(default_factory=dict)


class Carrier:
    """One SIPp UAS running one scenario for one call."""

    def __init__(self, workdir: Path, case: Case, rtp_port: int | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_sip_port()
        command = ["sipp", "-sf", str(SCENARIOS / case.scenario), "-i", "127.0.0.1"]
        command += ["-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(free_sip_port())]
        command += ["-m", "1", "-nostdin", "-timeout", "90", "-timeout_error"]
        command += ["-trace_err", "-error_file", str(workdir / "errors.log")]
        command += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
        if rtp_port is not None:
            command += ["-key", "rtp_port", str(rtp_port)]
        for name, value in case.sets.items():
            command += ["-set", name, str(value)]
        self.process = subprocess.Popen(
            command,
            cwd=workdir,
            stdout=(workdir / "sipp.out").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def finish(self, timeout_s: float = 30) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def errors(self) -> str:
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture(scope="module")
def notice(tmp_path_factory: pytest.TempPathFactory):
    """The spoken AI disclosure, the first thing a customer must hear (~2 s, μ-law)."""
    from synthesis.text import NoticeComposer
    from tests.synthesis.text.samples import INCLUDE

    composer = NoticeComposer.load(INCLUDE)
    return render_notice(
        composer, "repayment_reminder", ALL_NOTICES["repayment_reminder"], CONTEXT, segments=1
    )


def _cases(notice_s: float) -> list[Case]:
    completed = (CallState.COMPLETED, None, None)
    return [
        Case("early media, shorter", "early_media.xml", completed, {"early_ms": 1500}, True, True),
        Case(
            "early media, longer",
            "early_media.xml",
            completed,
            {"early_ms": round(notice_s * 1000) + 1500},
            True,
            True,
        ),
        Case("post-dial delay 7 s", "post_dial_delay.xml", completed, {"pdd_ms": 7000}),
        Case("post-dial delay 20 s", "post_dial_delay.xml", completed, {"pdd_ms": 20000}),
        Case(
            "post-dial give-up",
            "post_dial_cancel.xml",
            (CallState.NO_ANSWER, "post_dial_timeout", None),
            peer=False,
            timers={"post_dial_timeout_s": 3.0},
        ),
        Case("603 Decline", "decline.xml", (CallState.DECLINED, None, None), peer=False),
        Case("PCMA-only answer", "pcma_only.xml", completed),
        Case(
            "DTMF from a second SSRC",
            "dtmf_second_ssrc.xml",
            (CallState.COMPLETED, None, "9"),
            peer=False,
        ),
    ]


@pytest.fixture(scope="module")
def carrier_runs(
    tmp_path_factory: pytest.TempPathFactory, sip_tools, notice, audio_server
) -> Iterator[dict[str, Case]]:
    """Every case at once: a SIPp carrier, a call service and one call each."""
    workdir = tmp_path_factory.mktemp("carriers")
    engine = migrated_sqlite(workdir / "ledger.sqlite")
    make_service = ServiceFactory(workdir, engine)
    try:
        yield from _run_cases(workdir, make_service, notice, audio_server)
    finally:
        make_service.close()
        engine.dispose()


def _run_cases(workdir: Path, make_service, notice, audio_server) -> Iterator[dict[str, Case]]:
    cases = _cases(notice.seconds)
    url = audio_server.publish(notice.wav)
    running = []
    for index, case in enumerate(cases):
        peer = RtpPeer(ringback=case.ringback) if case.peer else None
        case_dir = workdir / f"case-{index}"
        case_dir.mkdir()
        if case.scenario == "dtmf_second_ssrc.xml":
            write_key_pcap(case_dir / "dtmf_second_ssrc.pcap", key=9, key_at_s=0.5)
        carrier = Carrier(case_dir, case, peer.port if peer else None)
        service = make_service(
            "127.0.0.1", carrier.port, name=f"carrier-{index}", **{**TIMERS, **case.timers}
        )
        time.sleep(0.2)  # SIPp binds its port
        request_ = CallRequest(
            to=f"+86139000001{index:02d}", idempotency_key=f"carrier-{index}", audio_url=url
        )
        call_id = service.gateway.place_call(request_).call_id
        running.append((case, carrier, service, peer, call_id))
    for case, carrier, service, peer, call_id in running:
        status = service.wait_terminal([call_id], timeout_s=60)[call_id]
        book = _book_row(service.engine, call_id)
        case.result = {
            "status": status,
            # The call's own time, from its INVITE to its end (the cases ran at once).
            "elapsed_s": round((book["ended_at"] - book["dialed_at"]).total_seconds(), 2),
            "sipp_exit": carrier.finish(),
            "sipp_errors": carrier.errors(),
            "book": book,
        }
        if peer is not None:
            time.sleep(0.3)
            case.result["packets"] = list(peer.packets)
            case.result["peer"] = peer
            peer.close()
    yield {case.name: case for case in cases}
    _write_table(workdir / "carrier-cases.json", cases)


def _book_row(engine: sa.Engine, call_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.sip_calls).where(schema.sip_calls.c.call_id == call_id)
        ).first()
    return dict(row._mapping) if row else {}


def _write_table(path: Path, cases: list[Case]) -> None:
    rows = []
    for case in cases:
        status = case.result.get("status")
        rows.append(
            {
                "case": case.name,
                "expected": [str(case.expected[0]), case.expected[1], case.expected[2]],
                "got": [str(status.state), status.error, status.key_pressed] if status else None,
                "elapsed_s": case.result.get("elapsed_s"),
                "sipp_exit": case.result.get("sipp_exit"),
                **{
                    k: case.result.get("book", {}).get(k)
                    for k in ("setup_s", "early_media_s", "ring_s", "talk_s", "codec")
                },
                **case.result.get("audio", {}),
            }
        )
    path.write_text(json.dumps(rows, indent=2, default=str))


def _case(carrier_runs: dict[str, Case], name: str) -> Case:
    case = carrier_runs[name]
    status = case.result["status"]
    got = (status.state, status.error, status.key_pressed)
    assert got == case.expected, (name, got, case.result["book"], case.result["sipp_errors"])
    assert case.result["sipp_exit"] == 0, (name, case.result["sipp_errors"])
    return case


def _heard(case: Case, sent_wav: bytes) -> tuple[Any, list]:
    recorded, packets = case.result["peer"].audio()
    match = compare_audio(read_pcm(sent_wav), recorded)
    case.result["audio"] = {
        "ncc": match.ncc,
        "frames": f"{match.equal_frames}/{match.active_frames}",
    }
    return match, packets


@pytest.mark.parametrize("name", ["early media, shorter", "early media, longer"])
def test_early_media_hears_no_notice_before_the_answer(carrier_runs, notice, name):
    case = _case(carrier_runs, name)
    early_s = case.sets["early_ms"] / 1000
    match, packets = _heard(case, notice.wav)
    # The whole notice, bit for bit, from its first sample (the AI disclosure).
    assert match.matches, match.as_dict()
    # Nothing but silence went out while the carrier played ringback.
    first = packets[0].arrived
    loud = [p for p in packets if not p.silent]
    assert loud, "the notice never arrived"
    assert loud[0].arrived - first >= early_s - 0.1, (loud[0].arrived - first, early_s)
    assert all(p.silent for p in packets if p.arrived - first < early_s - 0.1)
    book = case.result["book"]
    assert book["early_media_s"] == pytest.approx(early_s, abs=0.3)
    assert book["talk_s"] >= notice.seconds


@pytest.mark.parametrize("name", ["post-dial delay 7 s", "post-dial delay 20 s"])
def test_post_dial_delay_is_progress_not_a_failure(carrier_runs, name):
    case = _case(carrier_runs, name)
    book = case.result["book"]
    pdd_s = case.sets["pdd_ms"] / 1000
    assert book["setup_s"] < 1.0  # 100 Trying came at once
    assert book["early_media_s"] is None  # 180 without SDP
    assert case.result["elapsed_s"] >= pdd_s
    # The ring timer runs from the 180, which came after the post-dial delay.
    assert book["ring_s"] == pytest.approx(0.5, abs=0.3)


def test_a_post_dial_delay_past_its_timer_ends_as_no_answer(carrier_runs):
    case = _case(carrier_runs, "post-dial give-up")
    assert 3.0 <= case.result["elapsed_s"] < 8.0


def test_a_declined_call_has_an_outcome_of_its_own(carrier_runs):
    case = _case(carrier_runs, "603 Decline")
    assert reconcile.outcome_of(case.result["status"], "1", "9") == "call_declined"


def test_a_pcma_only_carrier_hears_the_whole_notice(carrier_runs, notice):
    case = _case(carrier_runs, "PCMA-only answer")
    match, packets = _heard(case, notice.wav)
    assert {p.payload_type for p in packets} == {PCMA}
    assert case.result["book"]["codec"] == "PCMA"
    # μ-law file, A-law line: re-quantised once, every frame there, in order.
    assert match.ncc >= 0.99, match.as_dict()
    assert match.recorded_s >= notice.seconds


def test_a_key_from_a_second_ssrc_is_not_lost(carrier_runs):
    case = _case(carrier_runs, "DTMF from a second SSRC")
    assert reconcile.outcome_of(case.result["status"], "1", "9") == "opted_out"
    assert case.result["book"]["digits"] == "9"


def test_the_pcap_holds_two_ssrcs(tmp_path):
    """The carrier's key really comes under another SSRC than its audio."""
    import struct

    data = write_key_pcap(tmp_path / "k.pcap").read_bytes()[24:]
    ssrcs = {}
    while data:
        length = struct.unpack("<I", data[8:12])[0]
        rtp = data[16 + 42 : 16 + length]
        ssrcs.setdefault(rtp[1] & 0x7F, set()).add(struct.unpack("!I", rtp[8:12])[0])
        data = data[16 + length :]
    assert ssrcs == {0: {0x11111111}, 101: {0x22222222}}
