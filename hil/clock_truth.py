"""How well the host's time sync did, judged against the MicroPython implant's own truth.

The firmware logs its clock segments (``boot``/``clk`` lines: frame counter, due time in
ticks_us — CLOCK_MONOTONIC on the unix port, the host's clock — fractional µs and the error in
ppb), so the true host time of every frame is known exactly. The host side is re-enacted from
the receiver's packet log (``hubctl record --packets-out``): envelopes in arrival order, the
time-sync packets fed to :class:`host_tools.timesync.TimeSyncFit` as they came, each spike
stamped with the fit *as it stood when the spike arrived* (what a live consumer gets).

Convention: sample index *s* is stamped with the time the implant frame ending at *s* left the
implant (its last sample, one sample period before *s*); the truth uses the same convention.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from host_tools.timesync import TimeSyncFit
from hub.wire import Reassembler, pb

E15 = 10**15


@dataclass(frozen=True)
class Segment:
    counter: int         # first frame of the segment
    due_us: int          # its due time (ticks_us)
    rem: int             # fractional µs numerator (over den)
    den: int             # fs · (10⁹ + ppb)
    ppb: int


class ClockTruth:
    """The implant's frame schedule of one epoch (no reboot), from the firmware's log."""

    def __init__(self, lines: list[dict[str, Any]], epoch: int = 0) -> None:
        boots = [i for i, x in enumerate(lines) if x.get("ev") == "boot"]
        if len(boots) <= epoch:
            raise ValueError(f"the firmware log has {len(boots)} boots, not epoch {epoch}")
        b = lines[boots[epoch]]
        self.fs, self.spf = int(b["fs"]), int(b["spf"])
        end = boots[epoch + 1] if epoch + 1 < len(boots) else len(lines)
        self.segments = [Segment(int(b["counter"]), int(b["due"]), 0,
                                 self.fs * (10**9 + int(b["ppb"])), int(b["ppb"]))]
        for x in lines[boots[epoch] + 1:end]:
            if x.get("ev") == "clk":
                self.segments.append(Segment(int(x["counter"]), int(x["due"]), int(x["rem"]),
                                             int(x["den"]), int(x["ppb"])))
        self._starts = [s.counter for s in self.segments]

    def _segment(self, counter: int) -> Segment:
        return self.segments[max(0, bisect.bisect_right(self._starts, counter) - 1)]

    def frame_due_ns(self, counters: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """True host time (ns) at which each frame left the implant."""
        out = np.empty(len(counters), dtype=np.float64)
        for i, c in enumerate(np.asarray(counters, dtype=np.int64).tolist()):
            s = self._segment(c)
            num = s.rem + (c - s.counter) * self.spf * E15
            out[i] = s.due_us * 1e3 + num * 1e3 / s.den
        return out

    def sample_ns(self, samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """True time of sample indices (the convention in the module docstring)."""
        s = np.asarray(samples, dtype=np.int64)
        counter = np.maximum(0, -(-s // self.spf) - 1)          # frame ending at or after s
        due = self.frame_due_ns(counter)
        ppb = np.array([self._segment(int(c)).ppb for c in counter.tolist()], dtype=np.float64)
        period = 1e9 / self.fs / (1 + ppb * 1e-9)
        return due - ((counter + 1) * self.spf - s) * period

    def ppm_at(self, counter: int) -> float:
        return self._segment(counter).ppb / 1000.0


def read_packets(path: Path) -> Iterator[pb.Envelope]:
    """Envelopes in arrival order from the receiver's packet log (host_tools.packetlog;
    streamed: a soak's log is hundreds of MB)."""
    from host_tools.packetlog import Kind, Link, PacketLogReader

    ra = Reassembler()
    for rec in PacketLogReader(path):
        if rec.kind == Kind.CONNECT and rec.link == Link.TCP:
            ra.reset()                     # a new TCP stream (BLE chunks continue)
        if rec.kind != Kind.CHUNK:
            continue
        for payload in ra.feed(rec.payload):
            try:
                yield pb.Envelope.FromString(payload)
            except DecodeError:            # a bad packet: the receiver counted it
                continue


class SessionTruth:
    """Every clock epoch of a session (the implant rebooted in between): the hub keeps counting
    samples across a reboot, the implant's counter restarts, so epoch e starts at the hub's
    sample index where epoch e−1 stopped (its ``reboot`` line: frames scheduled × spf)."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        n = sum(1 for x in lines if x.get("ev") == "boot")
        self.epochs = [ClockTruth(lines, e) for e in range(n)]
        self.spf = self.epochs[0].spf
        self.bases = [0]
        for x in lines:
            if x.get("ev") == "reboot":
                self.bases.append(self.bases[-1] + int(x["counter"]) * self.spf)
        self.bases = self.bases[:n]

    def _epoch(self, s: int) -> int:
        return max(0, bisect.bisect_right(self.bases, s) - 1)

    def sample_ns(self, samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        s = np.asarray(samples, dtype=np.int64)
        out = np.empty(s.size)
        ep = np.array([self._epoch(int(v)) for v in s.tolist()], dtype=np.int64)
        for e in np.unique(ep).tolist():
            m = ep == e
            out[m] = self.epochs[e].sample_ns(s[m] - self.bases[e])
        return out

    def ppm_at(self, sample: int) -> float:
        e = self._epoch(sample)
        return self.epochs[e].ppm_at((sample - self.bases[e]) // self.spf - 1)


def evaluate(packets: Iterable[pb.Envelope], lines: list[dict[str, Any]], tol_ppm: float = 5.0
             ) -> dict[str, Any]:
    """Drift recovery and spike-timestamp error of one session (see the module docstring);
    ``lines``: the firmware's log."""
    truth = SessionTruth(lines)
    fit = TimeSyncFit(same_clock=True)
    t_first: float | None = None
    t_epoch: float | None = None
    resets = 0
    #: (s since the first point, fitted ppm, true ppm, s since the clock epoch's first point)
    track: list[tuple[float, float, float, float]] = []
    errors: list[np.ndarray[Any, Any]] = []
    unstamped = 0
    for env in packets:
        kind = env.WhichOneof("payload")
        if kind == "time_sync" and not env.time_sync.host_time_ns:
            ts = env.time_sync
            fit.add_packet(ts, 0)
            t = ts.hub_time_ns / 1e9
            t_first = t if t_first is None else t_first
            if fit.resets != resets or t_epoch is None:   # a new implant clock: time from 0
                resets, t_epoch = fit.resets, t
            if fit.drift_ppm is not None:
                track.append((t - t_first, fit.drift_ppm, truth.ppm_at(int(ts.sample_index)),
                              t - t_epoch))
        elif kind == "spikes" and len(env.spikes.offset):
            s = env.spikes.first_sample + np.asarray(env.spikes.offset, np.int64)
            if fit.result() is None:
                unstamped += s.size
                continue
            errors.append((fit.to_host_ns(s) - truth.sample_ns(s)) / 1e6)
    signed = np.concatenate(errors) if errors else np.zeros(0)
    err = np.abs(signed)
    tr = np.array(track).reshape(-1, 4)
    bad = np.abs(tr[:, 1] - tr[:, 2]) > tol_ppm
    # convergence per clock epoch (a reboot restarts the fit): the latest epoch time at which
    # the fit was still off, over all epochs
    converge: float | None = 0.0 if tr.size else None
    starts = [*(np.flatnonzero(np.diff(tr[:, 3]) < 0) + 1).tolist(), len(tr)] if tr.size else []
    lo = 0
    for hi in starts:
        b = bad[lo:hi]
        if b.any():
            last = int(np.flatnonzero(b)[-1]) + lo
            converge = (None if last == hi - 1 or converge is None
                        else max(converge, float(tr[last + 1, 3])))
        lo = hi
    late = tr[:, 3] >= 60
    res = fit.result()
    return {
        "true_ppm_base": truth.epochs[0].segments[0].ppb / 1000.0,
        "true_ppm_end": float(tr[-1, 2]) if tr.size else None,
        "fitted_ppm_end": float(tr[-1, 1]) if tr.size else None,
        "max_abs_ppm_error_after_60s": (float(np.abs(tr[late, 1] - tr[late, 2]).max())
                                        if late.any() else None),
        "converged_s": converge,
        "spikes_stamped": int(err.size), "spikes_before_first_fit": unstamped,
        "timestamp_error_ms": {"p50": float(np.percentile(err, 50)) if err.size else None,
                               "p99": float(np.percentile(err, 99)) if err.size else None,
                               "max": float(err.max()) if err.size else None,
                               "median_signed": (float(np.median(signed)) if signed.size
                                                 else None)},
        "fit": res.to_dict() if res else None, "resets": fit.resets,
        "track": tr.round(4).tolist(),
    }
