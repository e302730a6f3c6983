"""Implant sample clock → host clock: a drift-corrected fit over the hub's time-sync packets.

Two clocks stand between a spike and the host's timeline:

1. **implant → hub.** Each periodic ``TimeSync`` (4 a second) says "the implant frame ending
   at ``sample_index`` arrived at ``hub_time_ns``" — the least delayed arrival of the last
   interval (``hub/daemon/linkclock.py``). These points lie a transit time above the
   implant's true sample clock that varies little from one to the next (the minimum of an
   interval's frames). :class:`TimeSyncFit` fits them with a line ``t = t0 + slope · (s − s0)``
   by least squares without the late outliers (a stall longer than an interval), then moves
   it onto their lower envelope (the least delayed point). The slope is the implant's real
   sample period in hub ns; its
   deviation from 1/fs is the crystal's error (``drift_ppm``). Only points of the last
   ``window_s`` seconds are used, so a slowly wandering crystal is followed.
2. **hub → host.** :class:`HubToHost`: the same clock when hub and host run on one machine
   (HIL); otherwise an offset from time-sync round trips (a ``TimeSyncRequest`` echoed with the
   hub's time when it handled it: offset = midpoint − hub time, error ≤ RTT/2, the smallest
   RTT wins), or, without round trips, the least one-way delay of periodic packets (``sent_ns``
   → host arrival), which places the host's timeline late by the link's minimum latency.

Why not fit the host's arrival times of the packets (what this module did first)? Those add the
hub's pipeline, its scheduler queue and the uplink's connection events — tens of ms of jitter on
BLE — and at one packet a second the slope of a 15 s fit was off by ±1000 ppm.

A new implant clock (``clock_epoch`` changed: the implant rebooted) or a sample index going
backwards (a new hub session) starts the fit over (``resets``). A packet whose index did not
advance carries no new information and is ignored.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClockFit:
    """The fitted line and how well the points fit it (what an NWB file stores)."""

    epoch: int                 # implant clock epoch the fit belongs to
    sample0: int               # the line: t_ns = time0_ns + ns_per_sample · (s − sample0)
    time0_ns: int              # on the hub's clock (HubToHost maps it to the host's)
    ns_per_sample: float
    nominal_fs: float
    drift_ppm: float           # how much faster the implant's clock runs than nominal
    points: int                # points in the window
    used: int                  # points on the envelope (the last refit)
    span_s: float              # time covered by the window's points
    residual_us_p50: float     # delay of the window's points above the line
    residual_us_p99: float
    residual_us_max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TimeSyncFit:
    """Maps implant sample indices to hub (or host) time in ns."""

    def __init__(self, window_s: float = 300.0, min_points: int = 3, iterations: int = 3,
                 keep: float = 0.5, floor_ns: float = 100_000.0, max_points: int = 4096,
                 same_clock: bool = False, method: str = "robust", cut_sigma: float = 2.5,
                 wall_offset_ns: int | None = None) -> None:
        """``window_s``: seconds of points fitted. ``method``: "robust" (least squares without
        the late outliers, for the hub's least-delayed stamps, whose delays are nearly iid)
        or "envelope" (refits on the points below the ``keep`` quantile of the residuals or
        within ``floor_ns`` of the least delayed: for heavy-tailed arrival times, e.g. a hub
        that does not stamp). ``same_clock``: hub and host share CLOCK_MONOTONIC."""
        if method not in ("robust", "envelope"):
            raise ValueError(f"method {method!r}: want robust or envelope")
        self.method = method
        self.cut_sigma = cut_sigma
        self.window_ns = int(window_s * 1e9)
        self.min_points = min_points
        self.iterations = iterations
        self.keep, self.floor_ns = keep, floor_ns
        self.points: deque[tuple[int, int]] = deque(maxlen=max_points)
        self.fs = 0.0
        self.epoch = 0
        self.resets = 0
        self.hub_to_host = HubToHost(same_clock)
        self._last_x: int | None = None
        self._fit: ClockFit | None = None
        # host monotonic → wall clock, taken once so wall timestamps never jump
        self.wall_offset_ns = (time.time_ns() - time.monotonic_ns()
                               if wall_offset_ns is None else wall_offset_ns)

    # ------------------------------------------------------------ input
    def add(self, sample_index: int, t_ns: int, fs: float = 0.0, epoch: int | None = None) -> None:
        """One observation: the sample ending at ``sample_index`` was seen at ``t_ns``."""
        if fs > 0:
            self.fs = fs
        if epoch is not None and epoch != self.epoch:
            self.epoch = epoch
            self._restart()
            self._last_x = None
        last, self._last_x = self._last_x, int(sample_index)
        if last is None or sample_index == last:
            return
        if sample_index < last:
            self._restart()                  # hub restarted: a new sample clock
            return
        self.points.append((int(sample_index), int(t_ns)))
        while self.points and self.points[-1][1] - self.points[0][1] > self.window_ns:
            self.points.popleft()
        self._fit = None

    def add_packet(self, ts: Any, host_rx_ns: int) -> None:
        """A ``TimeSync`` message as it arrived at the host (``host_rx_ns``). Uses the hub's
        stamp (``hub_time_ns``); a hub too old to send ``sent_ns`` is fitted on the arrival
        time instead (the jittery way)."""
        fs = float(ts.sampling_frequency or 0.0)
        if ts.sent_ns:
            self.hub_to_host.one_way(int(ts.sent_ns), host_rx_ns)
            if ts.host_time_ns:
                self.hub_to_host.round_trip(int(ts.host_time_ns), int(ts.sent_ns), host_rx_ns)
                return                          # a reply: its sample point is not fresh
            self.add(int(ts.sample_index), int(ts.hub_time_ns), fs, int(ts.clock_epoch))
        else:
            self.hub_to_host.same_clock = True  # the points are already on the host's clock
            self.method = "envelope"
            self.add(int(ts.sample_index), host_rx_ns, fs)

    def _restart(self) -> None:
        self.points.clear()
        self.resets += 1
        self._fit = None

    # ------------------------------------------------------------ the fit
    def result(self) -> ClockFit | None:
        """The current fit, or None before ``min_points`` points with distinct indices."""
        if self._fit is None:
            self._fit = self._compute()
        return self._fit

    def _compute(self) -> ClockFit | None:
        if len(self.points) < self.min_points:
            return None
        pts = np.array(self.points, dtype=np.int64)
        x0, y0 = int(pts[-1, 0]), int(pts[-1, 1])     # anchored at the newest point
        x = (pts[:, 0] - x0).astype(np.float64)
        y = (pts[:, 1] - y0).astype(np.float64)
        if np.ptp(x) == 0:
            return None
        if self.fs > 0:           # start from the nominal rate: a burst of late points (an
            slope = 1e9 / self.fs          # outage) cannot tilt the first selection
            offset = float(np.median(y - slope * x))
        else:
            slope, offset = (float(v) for v in np.polyfit(x, y, 1))
        keep = np.ones(x.size, dtype=bool)
        for _ in range(self.iterations):
            resid = y - (slope * x + offset)
            if self.method == "envelope":
                lim = max(float(np.quantile(resid[keep], self.keep)),
                          float(resid.min()) + self.floor_ns)
            else:                  # robust: drop only the late outliers (> median + k σ)
                med = float(np.median(resid[keep]))
                mad = 1.4826 * float(np.median(np.abs(resid[keep] - med)))
                lim = med + self.cut_sigma * max(mad, 20_000.0)
            keep = resid <= lim
            if keep.sum() < 2 or np.ptp(x[keep]) == 0:
                break
            slope, offset = (float(v) for v in np.polyfit(x[keep], y[keep], 1))
        resid = y - (slope * x + offset)
        offset += float(resid[keep].min())   # onto the envelope: the least delayed ≈ 0
        resid = y - (slope * x + offset)
        fs = self.fs
        return ClockFit(
            epoch=self.epoch, sample0=x0, time0_ns=y0 + round(offset), ns_per_sample=slope,
            nominal_fs=fs, drift_ppm=(1e9 / fs / slope - 1.0) * 1e6 if fs > 0 else float("nan"),
            points=int(x.size), used=int(keep.sum()), span_s=float(np.ptp(y) / 1e9),
            residual_us_p50=float(np.percentile(resid, 50) / 1e3),
            residual_us_p99=float(np.percentile(resid, 99) / 1e3),
            residual_us_max=float(resid.max() / 1e3))

    def residuals_ns(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(sample indices, delay above the fitted line in ns) of the window's points."""
        f = self.result()
        pts = np.array(self.points, dtype=np.int64).reshape(-1, 2)
        if f is None:
            return pts[:, 0], np.zeros(len(pts))
        return pts[:, 0], (pts[:, 1] - self.to_hub_ns(pts[:, 0])).astype(np.float64)

    # ------------------------------------------------------------ mapping
    def to_hub_ns(self, sample_index: int | np.ndarray[Any, Any]) -> Any:
        """Hub monotonic ns of a sample (array or scalar); raises before enough points."""
        f = self.result()
        if f is None:
            raise ValueError(f"time-sync fit needs ≥ {self.min_points} packets "
                             f"with distinct sample indices")
        dx = np.asarray(sample_index, np.float64) - f.sample0
        return f.time0_ns + np.rint(f.ns_per_sample * dx).astype(np.int64)

    def to_host_ns(self, sample_index: int | np.ndarray[Any, Any]) -> Any:
        """Host monotonic ns of a sample (array or scalar)."""
        return self.hub_to_host.map(self.to_hub_ns(sample_index))

    def to_wall_s(self, sample_index: int | np.ndarray[Any, Any]) -> Any:
        """Unix time in seconds of a sample."""
        return (self.to_host_ns(sample_index) + self.wall_offset_ns) / 1e9

    @property
    def drift_ppm(self) -> float | None:
        """How much faster the implant's sample clock runs than its nominal rate (ppm)."""
        f = self.result()
        return None if f is None or self.fs <= 0 else f.drift_ppm

    def summary(self) -> dict[str, Any]:
        f = self.result()
        out: dict[str, Any] = {"points": len(self.points), "fitted": f is not None,
                               "resets": self.resets, "epoch": self.epoch,
                               "hub_to_host": self.hub_to_host.summary()}
        if f is not None:
            out.update(f.to_dict())
            # kept for readers of the previous summary
            out["delay_ms"] = {"p50": f.residual_us_p50 / 1e3, "max": f.residual_us_max / 1e3}
        return out


class HubToHost:
    """Hub monotonic ns → host monotonic ns (see the module docstring)."""

    def __init__(self, same_clock: bool = False) -> None:
        self.same_clock = same_clock
        self.min_one_way: int | None = None     # min(host arrival − hub send)
        self.best_rtt: int | None = None
        self.rt_offset: float | None = None     # host − hub from the best round trip
        self.round_trips = 0

    def one_way(self, hub_sent_ns: int, host_rx_ns: int) -> None:
        d = host_rx_ns - hub_sent_ns
        if self.min_one_way is None or d < self.min_one_way:
            self.min_one_way = d

    def round_trip(self, host_tx_ns: int, hub_ns: int, host_rx_ns: int) -> None:
        rtt = host_rx_ns - host_tx_ns
        if rtt < 0:
            return
        self.round_trips += 1
        if self.best_rtt is None or rtt < self.best_rtt:
            self.best_rtt = rtt
            self.rt_offset = (host_tx_ns + host_rx_ns) / 2 - hub_ns

    @property
    def offset_ns(self) -> float:
        """host = hub + offset_ns."""
        if self.same_clock:
            return 0.0
        if self.rt_offset is not None:
            return self.rt_offset
        return float(self.min_one_way or 0)

    @property
    def method(self) -> str:
        return ("same clock" if self.same_clock else "round trip" if self.rt_offset is not None
                else "one way (late by the minimum link latency)" if self.min_one_way is not None
                else "none yet")

    def map(self, hub_ns: Any) -> Any:
        return hub_ns + np.int64(round(self.offset_ns))

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "offset_ns": self.offset_ns,
                "uncertainty_ns": (self.best_rtt / 2 if self.rt_offset is not None
                                   and self.best_rtt is not None and not self.same_clock
                                   else None), "round_trips": self.round_trips}
