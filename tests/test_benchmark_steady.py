"""The throughput benchmark's steady-state figures (``benchmarks.steady``): the machine's CPU counters
sampled while a core spins, and a video's milliseconds split into the run's stages and Beam's share."""

from __future__ import annotations

import time

import pytest

from benchmarks.steady import STAGES, CpuSample, CpuSampler, stage_ms, steady_figures

SPIN_S = 0.6


def test_a_spinning_core_shows_as_busy_in_the_window():
    with CpuSampler(interval_s=0.02) as sampler:
        until = time.process_time() + SPIN_S
        while time.process_time() < until:
            pass
    samples = sampler.samples
    assert len(samples) >= 10 and all(a.at <= b.at for a, b in zip(samples, samples[1:]))
    window = (samples[1].at, samples[-2].at)
    figures = steady_figures(samples, window, videos=3)
    span = samples[-2].at - samples[1].at
    # this process kept one core busy over the span (other processes may add to it)
    busy = (samples[-2].busy_s - samples[1].busy_s)
    assert busy >= 0.8 * span
    assert figures["busy_share"] == pytest.approx(busy / (samples[-2].total_s - samples[1].total_s), abs=1e-4)
    assert figures["busy_core_s_per_video"] == pytest.approx(busy / 3, rel=1e-3)
    assert figures["window_videos"] == 3 and figures["window_s"] == pytest.approx(span, abs=0.01)


def test_a_window_without_two_samples_is_refused():
    samples = [CpuSample(10.0, 1.0, 2.0), CpuSample(20.0, 5.0, 12.0)]
    with pytest.raises(ValueError, match="holds 1 CPU samples"):
        steady_figures(samples, (15.0, 25.0), videos=4)


def test_beams_share_is_what_the_stages_leave():
    stage_s = {"probe": 0.1, "decode": 2.0, "transfer": 0.2, "model": 6.0, "aggregate": 0.3, "write": 0.4}
    split = stage_ms(stage_s, videos=100, core_s_per_video=0.1)
    assert [split[name] for name in STAGES] == [1.0, 20.0, 2.0, 60.0, 3.0, 4.0]
    assert split["beam"] == pytest.approx(10.0) and split["total"] == 100.0
