"""Hub sample clock → host wall clock: a drift-corrected linear fit over time-sync packets.

The hub's sample index is the master clock (DESIGN §4). Each time-sync packet says "sample
index S is now" and arrives at the host after a transit delay that is never negative and varies
(queueing behind data, connection events, retransmissions). Fitting all arrivals with least
squares would bias the offset by the mean delay and let bursts of delay tilt the slope; the fit
here instead follows the *lower envelope* of the arrivals: least squares, then refits on the
points at or below the fit (the least delayed ones), a few times. The slope is the hub's real
sample period in host nanoseconds — its deviation from 1/fs is the crystal drift (ppm) — so
timestamps neither drift nor jump when a single packet is late.

A sample index that goes backwards is a new hub session (restart): the fit starts over. A
packet whose index did not advance (stream not started, or stopped) is not used.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np


class TimeSyncFit:
    """Maps hub sample indices to host time (ns, the clock ``add`` was given)."""

    def __init__(self, window: int = 600, min_points: int = 3, envelope_iterations: int = 3,
                 wall_offset_ns: int | None = None) -> None:
        self.window = window
        self.min_points = min_points
        self.iterations = envelope_iterations
        self.points: deque[tuple[int, int]] = deque(maxlen=window)
        self.fs = 0.0
        self.resets = 0
        self._last_x: int | None = None
        self._coef: tuple[float, float, int, int] | None = None   # slope, offset, x0, y0
        # host monotonic → wall clock, taken once so wall timestamps never jump
        self.wall_offset_ns = (time.time_ns() - time.monotonic_ns()
                               if wall_offset_ns is None else wall_offset_ns)

    def add(self, sample_index: int, host_ns: int, fs: float = 0.0) -> None:
        """One time-sync packet: ``sample_index`` is current at the hub; it arrived at
        ``host_ns``. Only packets whose index advanced since the previous one are used: a
        stream that has not started or has stopped repeats a stale index, and such a packet
        says nothing about when that sample was taken."""
        if fs > 0:
            self.fs = fs
        last, self._last_x = self._last_x, int(sample_index)
        if last is None or sample_index == last:
            return
        if sample_index < last:
            self.points.clear()                    # hub restarted: a new sample clock
            self.resets += 1
            return
        self.points.append((int(sample_index), int(host_ns)))
        self._coef = None

    def _fit(self) -> tuple[float, float, int, int] | None:
        if self._coef is not None:
            return self._coef
        if len(self.points) < self.min_points:
            return None
        pts = np.array(self.points, dtype=np.int64)
        x0, y0 = int(pts[0, 0]), int(pts[0, 1])
        x = (pts[:, 0] - x0).astype(np.float64)
        y = (pts[:, 1] - y0).astype(np.float64)
        if np.ptp(x) == 0:
            return None
        keep = np.ones(len(x), dtype=bool)
        if self.fs > 0:          # start from the nominal rate: a burst of late packets (an
            slope = 1e9 / self.fs          # outage) cannot tilt the first selection
            offset = float(np.median(y - slope * x))
        else:
            slope, offset = np.polyfit(x, y, 1)
        for _ in range(self.iterations):
            resid = y - (slope * x + offset)
            keep = resid <= np.median(resid[keep])        # the less delayed half
            if keep.sum() < 2 or np.ptp(x[keep]) == 0:
                break
            slope, offset = np.polyfit(x[keep], y[keep], 1)
        # shift onto the lower envelope: the least delayed arrival has delay ≈ 0
        offset += float(np.min(y - (slope * x + offset)))
        self._coef = (float(slope), float(offset), x0, y0)
        return self._coef

    def to_host_ns(self, sample_index: int | np.ndarray) -> Any:
        """Host monotonic ns of a sample (array or scalar); raises before enough points."""
        c = self._fit()
        if c is None:
            raise ValueError(f"time-sync fit needs ≥ {self.min_points} packets "
                             f"with distinct sample indices")
        slope, offset, x0, y0 = c
        return y0 + np.rint(slope * (np.asarray(sample_index, np.float64) - x0)
                            + offset).astype(np.int64)

    def to_wall_s(self, sample_index: int | np.ndarray) -> Any:
        """Unix time in seconds of a sample."""
        return (self.to_host_ns(sample_index) + self.wall_offset_ns) / 1e9

    @property
    def drift_ppm(self) -> float | None:
        """How much faster the hub's sample clock runs than its nominal rate (ppm)."""
        c = self._fit()
        if c is None or self.fs <= 0:
            return None
        return (1e9 / self.fs / c[0] - 1.0) * 1e6

    def summary(self) -> dict[str, Any]:
        c = self._fit()
        if c is None:
            return {"points": len(self.points), "fitted": False, "resets": self.resets}
        slope, offset, x0, y0 = c
        pts = np.array(self.points, dtype=np.int64)
        resid = (pts[:, 1] - y0) - (slope * (pts[:, 0] - x0) + offset)
        return {"points": len(self.points), "fitted": True, "resets": self.resets,
                "ns_per_sample": slope, "drift_ppm": self.drift_ppm,
                "delay_ms": {"p50": float(np.percentile(resid, 50) / 1e6),
                             "max": float(resid.max() / 1e6)}}
