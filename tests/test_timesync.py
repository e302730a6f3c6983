"""The time-sync fit recovers drift and ignores late packets (the envelope method, for points
with heavy-tailed delays: arrival times at the host of a hub that does not stamp)."""

from __future__ import annotations

import numpy as np
import pytest

from host_tools.timesync import TimeSyncFit


def _simulate(ppm: float, n: int = 120, seed: int = 0) -> tuple[TimeSyncFit, float]:
    rng = np.random.default_rng(seed)
    fs = 30000.0
    true_period_ns = 1e9 / (fs * (1 + ppm * 1e-6))   # the hub crystal runs fast by ppm
    fit = TimeSyncFit(method="envelope")
    t0 = 5_000_000_000
    for k in range(n):
        s = k * 30000
        delay = rng.exponential(4e6) + 1e6 + (50e6 if k % 17 == 0 else 0)  # some very late
        fit.add(s, int(t0 + s * true_period_ns + delay), fs)
    return fit, true_period_ns


@pytest.mark.parametrize("ppm", [-80.0, 0.0, 40.0])
def test_drift_and_offset(ppm: float) -> None:
    fit, period = _simulate(ppm)
    assert fit.drift_ppm == pytest.approx(ppm, abs=3.0)
    # mapping error vs the true send time: within the minimum transit delay (~1 ms)
    s = np.array([0, 1_000_000, 3_570_000])
    true = 5_000_000_000 + s * period
    err_ms = (fit.to_host_ns(s) - true) / 1e6
    assert np.all(np.abs(err_ms) < 2.0)


def test_reset_on_hub_restart_and_needs_points() -> None:
    fit = TimeSyncFit(method="envelope")
    with pytest.raises(ValueError, match="needs"):
        fit.to_host_ns(0)
    for k in range(5):
        fit.add(1_000_000 + k * 30000, k * 1_000_000_000, 30000.0)
    assert len(fit.points) == 4                 # the first packet only starts the clock
    fit.add(10, 6_000_000_000, 30000.0)
    assert fit.resets == 1 and len(fit.points) == 0
    assert fit.summary()["fitted"] is False


def test_stale_indices_are_ignored() -> None:
    fit = TimeSyncFit(method="envelope")
    for k in range(3):                          # hub up, no samples yet: index 0 repeats
        fit.add(0, k * 1_000_000_000, 30000.0)
    for k in range(1, 6):
        fit.add(k * 30000, int(3e9 + k * 1e9), 30000.0)
    for k in range(3):                          # the implant stopped: the index stalls
        fit.add(5 * 30000, int(9e9 + k * 1e9), 30000.0)
    assert [x for x, _ in fit.points] == [k * 30000 for k in range(1, 6)]
    assert fit.drift_ppm == pytest.approx(0.0, abs=1.0)


def test_an_outage_burst_does_not_tilt_the_fit() -> None:
    fs, ppm = 30000.0, 60.0
    period = 1e9 / (fs * (1 + ppm * 1e-6))
    fit = TimeSyncFit(method="envelope")
    for k in range(30):                      # one packet a second; seconds 10–16 held back
        s = k * 30000
        t_send = 1e9 + s * period
        arrival = max(t_send, 1e9 + 16.5 * 30000 * period) if 10 <= k <= 16 else t_send
        fit.add(s, int(arrival + 2e6), fs)
    assert fit.drift_ppm == pytest.approx(ppm, abs=5.0)
