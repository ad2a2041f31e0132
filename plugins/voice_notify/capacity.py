"""Capacity plan of one campaign day: GPU-hours, call timing, trunk channels and storage.

A day's figures from a handful of inputs (notices, the segment cache, the engine's real-time
factor, GPU slots, the trunk and the calling rate, answer and redial shares, audio bytes and
retention)::

    python -m voice_notify.capacity --notices 100000 [--gpu-slots 8] [--json]

The defaults describe CosyVoice3 on a GPU (real-time factor 0.1, about 29 s of audio, so
2.9 GPU-seconds, per notice before the segment cache serves half of it), four GPU slots (the
``cosyvoice_gpu`` pool), the gateway's default rate (20 calls/s) and the demo simulator's
answer rate. The campaign report runs the same model on a date's measured figures.

The model, per day (``N`` planned notices):

- GPU seconds per notice = audio seconds x real-time factor x (1 - cache share);
  GPU-hours = N x that / 3600 (plus each batch's start-up, ``batch_startup_s``);
- batches as the plan makes them (``plan.batches.choose_batch_size``: ``batch_size``,
  larger where the day would map more than half of ``max_map_length`` tasks);
- time to first call = the first batch synthesized on one slot (its start-up, then
  its notices); synthesis of all N takes the batches in waves of ``gpu_slots``;
- dial rate = min(calls/s limit, trunk channels / channel seconds per attempt), where an
  answered attempt holds a channel for the average call length and an unanswered one for
  the ring time;
- first attempts = N x ``call_share`` (the rest fail synthesis or the gate at dial time);
  attempts = first attempts x (1 + ``redial_share``);
- time to last first attempt = max(first call + first attempts / dial rate, all
  synthesized + the last batch at the dial rate); redials follow their first attempt by
  ``redial_after_s`` and share the dial rate;
- channel-hours = attempts x channel seconds per attempt / 3600;
- storage per day = N x (telephone + master bytes); under retention, x retention days.

Times are seconds from the start of synthesis (extract and plan come before it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from voice_notify.plan.batches import choose_batch_size

# G.711 (8 kHz, 8 bits) telephone audio and the 24 kHz PCM16 master, bytes per second.
TELEPHONE_BYTES_PER_S = 8000
MASTER_BYTES_PER_S = 48000
# A RIFF header with the AI label's LIST/INFO chunk, per file.
WAV_HEADER_BYTES = 400


@dataclass(frozen=True)
class CapacityInputs:
    """What a campaign day asks of the GPUs, the trunk and the store.

    :param notices: notices planned (to be synthesized and called) per day
    :param cache_share: share of speech seconds the segment cache serves (0..1)
    :param real_time_factor: engine seconds per second of audio on one GPU slot
    :param audio_s_per_notice: seconds of audio per notice (the whole call's audio)
    :param gpu_slots: synthesis tasks at once (the ``cosyvoice_gpu`` pool)
    :param batch_size: notices per synthesis batch (the DAG's ``batch_size``), for a day
        small enough; a large day gets larger batches, as the plan gives it
    :param max_map_length: Airflow's ``[core] max_map_length``, which bounds the batches
    :param batch_startup_s: seconds before a batch's first notice (pod start, model load)
    :param trunk_channels: concurrent calls the trunk carries
    :param calls_per_second: call starts per second the gateway allows
    :param answer_rate: share of call attempts answered (0..1)
    :param avg_call_s: seconds an answered call holds a channel
    :param ring_s: seconds an unanswered attempt holds a channel (ringing)
    :param call_share: share of planned notices called at all (the rest fail synthesis or
        are stopped by the gate at dial time)
    :param redial_share: extra attempts per notice (0.2: one in five is dialled twice)
    :param redial_after_s: seconds between an attempt's end and its redial
    :param telephone_bytes: bytes of telephone audio per notice (None: from the seconds)
    :param master_bytes: bytes of the master per notice (None: from the seconds)
    :param retention_days: days audio is kept
    """

    notices: int = 100_000
    cache_share: float = 0.5
    real_time_factor: float = 0.1
    audio_s_per_notice: float = 29.0
    gpu_slots: int = 4
    batch_size: int = 50
    max_map_length: int = 1024
    batch_startup_s: float = 0.0
    trunk_channels: int = 120
    calls_per_second: float = 20.0
    answer_rate: float = 0.77
    avg_call_s: float = 35.0
    ring_s: float = 25.0
    call_share: float = 1.0
    redial_share: float = 0.2
    redial_after_s: float = 0.0
    telephone_bytes: float | None = None
    master_bytes: float | None = None
    retention_days: int = 90

    def __post_init__(self) -> None:
        for name in ("cache_share", "answer_rate", "call_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in (
            "gpu_slots",
            "batch_size",
            "max_map_length",
            "trunk_channels",
            "retention_days",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.calls_per_second <= 0:
            raise ValueError("calls_per_second must be positive")
        for name in (
            "notices",
            "real_time_factor",
            "audio_s_per_notice",
            "batch_startup_s",
            "avg_call_s",
            "ring_s",
            "redial_share",
            "redial_after_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.avg_call_s + self.ring_s <= 0:
            raise ValueError("a call must hold a channel for some time")

    @property
    def gpu_s_per_notice(self) -> float:
        """Engine seconds per notice once the segment cache has served its share."""
        return self.audio_s_per_notice * self.real_time_factor * (1.0 - self.cache_share)

    @property
    def gpu_s_per_notice_uncached(self) -> float:
        return self.audio_s_per_notice * self.real_time_factor

    @property
    def telephone_bytes_per_notice(self) -> float:
        if self.telephone_bytes is not None:
            return float(self.telephone_bytes)
        return self.audio_s_per_notice * TELEPHONE_BYTES_PER_S + WAV_HEADER_BYTES

    @property
    def master_bytes_per_notice(self) -> float:
        if self.master_bytes is not None:
            return float(self.master_bytes)
        return self.audio_s_per_notice * MASTER_BYTES_PER_S + WAV_HEADER_BYTES


@dataclass(frozen=True)
class CapacityPlan:
    """A day's figures (seconds, hours, bytes); ``inputs`` are what they came from."""

    inputs: CapacityInputs
    batches: int
    gpu_s_per_notice: float
    gpu_hours: float
    synthesis_s: float
    time_to_first_call_s: float
    channel_s_per_attempt: float
    dial_rate: float
    dial_bound: str  # "rate limit" or "trunk channels": which one sets the dial rate
    peak_channels: float
    attempts: float
    time_to_last_first_attempt_s: float
    time_to_last_call_s: float
    channel_hours: float
    bytes_per_notice: float
    storage_per_day_bytes: float
    storage_retained_bytes: float

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["inputs"] = asdict(self.inputs)
        return {k: _rounded(v) for k, v in body.items()}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def plan_capacity(inputs: CapacityInputs) -> CapacityPlan:
    """The day's capacity figures for ``inputs`` (see the module docstring for the model)."""
    n = inputs.notices
    size = (
        choose_batch_size(n, inputs.batch_size, inputs.gpu_slots, inputs.max_map_length)
        if n
        else inputs.batch_size
    )
    batches = math.ceil(n / size) if n else 0
    per_notice = inputs.gpu_s_per_notice
    first_batch = min(size, n)
    waves = math.ceil(batches / inputs.gpu_slots) if batches else 0
    time_to_first_call = inputs.batch_startup_s + first_batch * per_notice if n else 0.0
    synthesis_s = max(
        time_to_first_call, waves * inputs.batch_startup_s + n * per_notice / inputs.gpu_slots
    )
    gpu_hours = (n * per_notice + batches * inputs.batch_startup_s) / 3600.0

    hold = inputs.answer_rate * inputs.avg_call_s + (1.0 - inputs.answer_rate) * inputs.ring_s
    by_channels = inputs.trunk_channels / hold
    dial_rate = min(inputs.calls_per_second, by_channels)
    bound = "rate limit" if inputs.calls_per_second <= by_channels else "trunk channels"
    first_attempts = n * inputs.call_share
    attempts = first_attempts * (1.0 + inputs.redial_share)
    if first_attempts:
        last_first = max(
            time_to_first_call + (first_attempts - 1) / dial_rate,
            synthesis_s + (first_batch * inputs.call_share - 1) / dial_rate,
        )
        last_call = max(last_first, time_to_first_call + (attempts - 1) / dial_rate)
        if inputs.redial_share > 0:
            # The last first attempt's own redial, if it is one: after its call and the pause.
            last_call = max(last_call, last_first + hold + inputs.redial_after_s)
    else:
        last_first = last_call = 0.0
    per_notice_bytes = inputs.telephone_bytes_per_notice + inputs.master_bytes_per_notice
    per_day = n * per_notice_bytes
    return CapacityPlan(
        inputs=inputs,
        batches=batches,
        gpu_s_per_notice=per_notice,
        gpu_hours=gpu_hours,
        synthesis_s=synthesis_s,
        time_to_first_call_s=time_to_first_call,
        channel_s_per_attempt=hold,
        dial_rate=dial_rate,
        dial_bound=bound,
        peak_channels=min(float(inputs.trunk_channels), dial_rate * hold),
        attempts=attempts,
        time_to_last_first_attempt_s=last_first,
        time_to_last_call_s=last_call,
        channel_hours=attempts * hold / 3600.0,
        bytes_per_notice=per_notice_bytes,
        storage_per_day_bytes=per_day,
        storage_retained_bytes=per_day * inputs.retention_days,
    )


def with_measured(inputs: CapacityInputs, measured: dict[str, Any]) -> CapacityInputs:
    """``inputs`` with every measured figure that is present (not None) put in its place."""
    known = {f.name for f in fields(CapacityInputs)}
    return replace(inputs, **{k: v for k, v in measured.items() if k in known and v is not None})


def duration(seconds: float) -> str:
    """Seconds as people read a duration: ``42.0 s``, ``12 min 5 s``, ``3 h 20 min``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(n_bytes: float) -> str:
    """Bytes in binary units: ``1.4 MiB``, ``2.10 TiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def plan_rows(plan: CapacityPlan) -> list[tuple[str, str]]:
    """The plan as (figure, value) rows: the CLI's table and the report's section."""
    i = plan.inputs
    return [
        ("notices per day", f"{i.notices:,}"),
        ("batches (synthesize + dial task pairs)", f"{plan.batches:,}"),
        (
            "GPU seconds per notice",
            f"{plan.gpu_s_per_notice:.3f} s ({i.gpu_s_per_notice_uncached:.3f} s before the "
            f"cache's {i.cache_share:.0%})",
        ),
        ("GPU-hours", f"{plan.gpu_hours:,.2f} h"),
        ("synthesis wall time", f"{duration(plan.synthesis_s)} on {i.gpu_slots} GPU slots"),
        ("time to first call", duration(plan.time_to_first_call_s)),
        ("dial rate", f"{plan.dial_rate:.2f} calls/s (bound: {plan.dial_bound})"),
        ("channels busy at that rate", f"{plan.peak_channels:,.1f} of {i.trunk_channels:,}"),
        (
            "call attempts",
            f"{plan.attempts:,.0f} (called {i.call_share:.0%}, redial share {i.redial_share:.0%})",
        ),
        ("time to last first attempt", duration(plan.time_to_last_first_attempt_s)),
        ("time to last call", duration(plan.time_to_last_call_s)),
        ("channel-hours", f"{plan.channel_hours:,.2f} h"),
        ("bytes per notice (telephone + master)", size(plan.bytes_per_notice)),
        ("storage per day", size(plan.storage_per_day_bytes)),
        (f"storage under {i.retention_days}-day retention", size(plan.storage_retained_bytes)),
    ]


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voice_notify.capacity",
        description=__doc__.splitlines()[0],
    )
    defaults = CapacityInputs()
    options = {
        "notices": (int, "notices planned per day"),
        "cache_share": (float, "share of speech served by the segment cache (0..1)"),
        "real_time_factor": (float, "engine seconds per audio second (CosyVoice3 on a GPU: 0.1)"),
        "audio_s_per_notice": (float, "average audio seconds per notice"),
        "gpu_slots": (int, "synthesis tasks at once (the cosyvoice_gpu pool)"),
        "batch_size": (int, "notices per synthesis batch of a small day"),
        "max_map_length": (int, "Airflow's [core] max_map_length (bounds the batches)"),
        "batch_startup_s": (float, "seconds before a batch's first notice (pod, model load)"),
        "trunk_channels": (int, "concurrent calls the trunk carries"),
        "calls_per_second": (float, "call starts per second the gateway allows"),
        "answer_rate": (float, "share of attempts answered (0..1)"),
        "avg_call_s": (float, "seconds an answered call lasts"),
        "ring_s": (float, "seconds an unanswered attempt rings"),
        "call_share": (float, "share of planned notices called at all (0..1)"),
        "redial_share": (float, "extra attempts per notice (0.2: one in five redialled)"),
        "redial_after_s": (float, "seconds between an attempt and its redial"),
        "telephone_bytes": (float, "telephone audio bytes per notice (default: 8 kB/s)"),
        "master_bytes": (float, "master audio bytes per notice (default: 48 kB/s)"),
        "retention_days": (int, "days audio is kept"),
    }
    for name, (kind, text) in options.items():
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=default,
            help=f"{text} (default {default})",
        )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    as_json = args.pop("json")
    try:
        plan = plan_capacity(CapacityInputs(**args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(plan.as_dict(), indent=2))
    else:
        print(format_table(plan_rows(plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
