"""The capacity model's arithmetic, against figures worked out by hand."""

from __future__ import annotations

import json

import pytest

from voice_notify import capacity
from voice_notify.capacity import CapacityInputs, plan_capacity


def test_the_default_day_of_100000_notices() -> None:
    plan = plan_capacity(CapacityInputs(notices=100_000))
    # 29 s of audio x RTF 0.1 = 2.9 GPU-s, half of it from the cache: 1.45 s.
    assert plan.gpu_s_per_notice == pytest.approx(1.45)
    assert plan.gpu_hours == pytest.approx(145_000 / 3600)  # 40.28 h
    # Batches as the plan makes them: 100,000 / 50 would map 2,000 tasks, over half of
    # max_map_length (512 of 1,024), so the batches grow to 196 notices: 511 of them.
    assert plan.batches == 511
    assert plan.time_to_first_call_s == pytest.approx(196 * 1.45)  # 284.2 s
    assert plan.synthesis_s == pytest.approx(100_000 * 1.45 / 4)  # 36,250 s on 4 slots
    # 0.77 x 35 s + 0.23 x 25 s = 32.7 s a channel per attempt; 120 channels / 32.7 s is
    # 3.67 calls/s, below the 20 calls/s limit: the trunk sets the pace.
    assert plan.channel_s_per_attempt == pytest.approx(32.7)
    assert plan.dial_rate == pytest.approx(120 / 32.7)
    assert plan.dial_bound == "trunk channels"
    assert plan.peak_channels == pytest.approx(120)
    assert plan.attempts == pytest.approx(120_000)
    assert plan.channel_hours == pytest.approx(120_000 * 32.7 / 3600)  # 1,090 h
    # Synthesis is the slower pipe: the last first attempt is the last batch's.
    assert plan.time_to_last_first_attempt_s == pytest.approx(36_250 + 195 / (120 / 32.7))
    # 120,000 attempts at 3.67/s from 284 s = 32,984 s < 36,303 s; its redial follows.
    assert plan.time_to_last_call_s == pytest.approx(36_250 + 195 / (120 / 32.7) + 32.7)
    telephone, master = 29 * 8000 + 400, 29 * 48000 + 400
    assert plan.bytes_per_notice == telephone + master == 1_624_800
    assert plan.storage_per_day_bytes == pytest.approx(100_000 * 1_624_800)
    assert plan.storage_retained_bytes == pytest.approx(90 * 100_000 * 1_624_800)


def test_the_batches_follow_max_map_length() -> None:
    small = plan_capacity(CapacityInputs(notices=10_000))
    assert small.batches == 200  # 50 a batch: 200 tasks fit in half of 1,024
    assert plan_capacity(CapacityInputs(notices=10_000, max_map_length=200)).batches == 100
    assert plan_capacity(CapacityInputs(notices=500_000)).batches == 512  # 977 a batch


def test_a_small_rate_bound_day_worked_by_hand() -> None:
    inputs = CapacityInputs(
        notices=10,
        cache_share=0.2,
        real_time_factor=0.5,
        audio_s_per_notice=10.0,
        gpu_slots=2,
        batch_size=4,
        batch_startup_s=1.0,
        trunk_channels=100,
        calls_per_second=2.0,
        answer_rate=0.5,
        avg_call_s=20.0,
        ring_s=10.0,
        redial_share=0.5,
        redial_after_s=5.0,
        telephone_bytes=1000,
        master_bytes=3000,
        retention_days=7,
    )
    plan = plan_capacity(inputs)
    assert plan.gpu_s_per_notice == pytest.approx(4.0)  # 10 s x 0.5 x (1 - 0.2)
    assert plan.batches == 3  # 4 + 4 + 2, in two waves of two slots
    assert plan.gpu_hours == pytest.approx((10 * 4.0 + 3 * 1.0) / 3600)
    assert plan.time_to_first_call_s == pytest.approx(1 + 4 * 4.0)  # 17 s
    assert plan.synthesis_s == pytest.approx(2 * 1 + 10 * 4.0 / 2)  # 22 s
    assert plan.channel_s_per_attempt == pytest.approx(15.0)  # 0.5 x 20 + 0.5 x 10
    assert plan.dial_rate == pytest.approx(2.0)  # 100 / 15 = 6.7 > 2: the limit binds
    assert plan.dial_bound == "rate limit"
    assert plan.peak_channels == pytest.approx(30.0)
    assert plan.attempts == pytest.approx(15.0)
    # max(17 + 9/2, 22 + 3/2) = 23.5; all 15 attempts by 17 + 14/2 = 24; the last first
    # attempt's redial: 23.5 + 15 + 5 = 43.5.
    assert plan.time_to_last_first_attempt_s == pytest.approx(23.5)
    assert plan.time_to_last_call_s == pytest.approx(43.5)
    assert plan.channel_hours == pytest.approx(15 * 15 / 3600)
    assert plan.storage_per_day_bytes == 40_000
    assert plan.storage_retained_bytes == 280_000


def test_notices_not_called_place_no_calls() -> None:
    plan = plan_capacity(
        CapacityInputs(notices=1000, call_share=0.9, redial_share=0.25, calls_per_second=10)
    )
    assert plan.attempts == pytest.approx(1000 * 0.9 * 1.25)
    assert plan.channel_hours == pytest.approx(1125 * plan.channel_s_per_attempt / 3600)


def test_an_empty_day_is_all_zero() -> None:
    plan = plan_capacity(CapacityInputs(notices=0))
    assert plan.batches == 0
    assert plan.gpu_hours == plan.attempts == plan.time_to_last_call_s == 0
    assert plan.storage_per_day_bytes == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"cache_share": 1.5},
        {"answer_rate": -0.1},
        {"gpu_slots": 0},
        {"calls_per_second": 0},
        {"notices": -1},
        {"retention_days": 0},
    ],
)
def test_impossible_inputs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        CapacityInputs(**bad)


def test_measured_figures_replace_defaults_where_present() -> None:
    merged = capacity.with_measured(
        CapacityInputs(), {"cache_share": 0.3, "answer_rate": None, "attempts": 7}
    )
    assert merged.cache_share == 0.3
    assert merged.answer_rate == CapacityInputs().answer_rate  # None: not measured
    assert not hasattr(merged, "attempts")  # an outcome, not an input


def test_the_cli_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert capacity.main(["--notices", "20000", "--gpu-slots", "8"]) == 0
    table = capsys.readouterr().out
    assert "GPU-hours" in table and "time to last call" in table and "8 GPU slots" in table
    assert capacity.main(["--notices", "20000", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["inputs"]["notices"] == 20000
    assert body["batches"] == 400
    assert body["gpu_hours"] == pytest.approx(20000 * 1.45 / 3600, abs=1e-4)
    assert capacity.main(["--cache-share", "2"]) == 2


def test_durations_and_sizes_read_as_people_write_them() -> None:
    assert capacity.duration(42.04) == "42.0 s"
    assert capacity.duration(725) == "12 min 5 s"
    assert capacity.duration(36_263) == "10 h 4 min"
    assert capacity.size(512) == "512 B"
    assert capacity.size(1_624_800) == "1.55 MiB"
