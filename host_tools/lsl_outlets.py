"""The hub's streams as Lab Streaming Layer outlets, with XDF channel metadata.

Outlets (name = PREFIX-…, source_id = PREFIX-…-SESSION so a restarted hub is a new stream):

- ``features`` (type ``NeuralFeatures``, regular at 1/bin): per channel the threshold
  crossings (``tc-chN``, count), spike-band RMS (``rms-chN``, counts) and, in ECoG mode,
  high-gamma RMS (``hg-chN``, counts); one sample per bin, stamped at the bin's end;
- ``spikes`` (type ``Spikes``, irregular, int32): one sample per spike — channel, unit (−1
  unsorted), amplitude (counts) — stamped at the spike's sample;
- ``units`` (type ``Markers``, irregular, string): the sorter's unit births, merges and
  retirements as JSON strings;
- ``cursor`` (type ``Cursor``, regular at 1/bin, with a decoder): x, y (workspace units) and
  vx, vy (full speed = 1) of the decoded cursor, stamped at the end of the bin it decoded.

Timestamps are in ``pylsl.local_clock()`` terms (seconds of the host's steady clock) from the
drift-corrected time-sync fit (``host_tools/timesync.py``): hub sample index → host monotonic
time, plus the fixed offset between that clock and ``local_clock`` measured at start. Until
the fit has its first points, samples wait in a bounded buffer (overflow is counted, never
silent).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import Decoder
from host_tools.decoding.features import BinAssembler
from host_tools.decoding.task import Cursor
from hub.wire import pb

log = logging.getLogger(__name__)

MAX_WAITING = 50_000          # items held while the time-sync fit has no points yet


def _channels(info: Any, labels: list[str], unit: str, kind: str) -> None:
    chans = info.desc().append_child("channels")
    for lab in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", lab)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)


def clock_offset_s(local_clock: Callable[[], float], tries: int = 25) -> float:
    """``local_clock() − time.monotonic()``, read between two monotonic readings; of
    ``tries`` the tightest bracket wins, so a preemption between the reads (ms on a loaded
    machine) does not become an offset on every timestamp."""
    best = (float("inf"), 0.0)
    for _ in range(tries):
        a = time.monotonic()
        t = float(local_clock())
        b = time.monotonic()
        best = min(best, (b - a, t - (a + b) / 2))
    return best[1]


class LslPublisher:
    """``on_envelope(env, t_ns)`` per hub packet; ``to_host_ns(sample)`` maps hub samples to the
    host's monotonic clock (the session's time-sync fit)."""

    def __init__(self, prefix: str, to_host_ns: Callable[[int], int],
                 decoder: Decoder | None = None, features: str = "tc",
                 speed: float = 1.0) -> None:
        import pylsl

        self.pylsl = pylsl
        self.prefix = prefix
        self.to_host_ns = to_host_ns
        self.decoder = decoder
        self.assembler = BinAssembler(features) if decoder is not None else None
        self.cursor = Cursor(speed)
        self.offset_s = clock_offset_s(pylsl.local_clock)
        self.outlets: dict[str, Any] = {}
        self.session = 0
        self.fs = 0.0
        self.waiting: deque[tuple[str, int, list[Any]]] = deque()
        self.counts = {"features": 0, "spikes": 0, "units": 0, "cursor": 0,
                       "dropped_waiting": 0}

    # ------------------------------------------------------------------ outlets
    def _outlet(self, kind: str, n: int, rate: float, fmt: Any, labels: list[str],
                unit: str, ch_type: str, stream_type: str) -> Any:
        out = self.outlets.get(kind)
        if out is not None:
            return out
        pl = self.pylsl
        info = pl.StreamInfo(f"{self.prefix}-{kind}", stream_type, n, rate, fmt,
                             f"{self.prefix}-{kind}-{self.session:08x}")
        _channels(info, labels, unit, ch_type)
        acq = info.desc().append_child("acquisition")
        acq.append_child_value("manufacturer", "implant-hub")
        acq.append_child_value("model", "hub")
        acq.append_child_value("session_id", f"{self.session:08x}")
        acq.append_child_value("sampling_frequency", f"{self.fs:g}")
        acq.append_child_value("timestamps", "local_clock() from the hub's time-sync fit")
        out = self.outlets[kind] = pl.StreamOutlet(info, 1, 60)
        log.info("LSL outlet %s-%s: %d channels at %s", self.prefix, kind, n,
                 "irregular" if rate == 0 else f"{rate:g} Hz")
        return out

    def _time(self, sample: int) -> float:
        return float(self.to_host_ns(sample)) / 1e9 + self.offset_s

    def _push(self, kind: str, sample: int, values: list[Any]) -> None:
        try:
            ts = self._time(sample)
        except ValueError:               # no time-sync points yet: wait for them
            if len(self.waiting) >= MAX_WAITING:
                self.waiting.popleft()
                self.counts["dropped_waiting"] += 1
            self.waiting.append((kind, sample, values))
            return
        while self.waiting:
            k, s, v = self.waiting.popleft()
            self._emit(k, s, v, self._time(s))
        self._emit(kind, sample, values, ts)

    def _emit(self, kind: str, sample: int, values: list[Any], ts: float) -> None:
        self.outlets[kind].push_sample(values, ts)
        self.counts[kind] += 1

    # ------------------------------------------------------------------ packets
    def on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        kind = env.WhichOneof("payload")
        if env.session_id and env.session_id != self.session:
            if self.session:
                log.warning("hub session changed: new LSL streams")
            self.session = env.session_id
            self.outlets.clear()
            self.waiting.clear()
        if kind == "time_sync" and env.time_sync.sampling_frequency:
            self.fs = env.time_sync.sampling_frequency
        elif kind == "telemetry" and env.telemetry.sampling_frequency:
            self.fs = env.telemetry.sampling_frequency
        elif kind == "features":
            self._features(env.features)
        elif kind == "spikes":
            self._spikes(env.spikes)
        if self.assembler is not None and self.decoder is not None:
            for b in self.assembler.feed(env):
                self._cursor(b.end_sample, b.x, env.features.bin_samples)

    def _features(self, fb: Any) -> None:
        n, c, bs = int(fb.n_bins), int(fb.n_channels), int(fb.bin_samples)
        if not n or not c or not self.fs:
            return
        hg = len(fb.hg_rms_q4) == n * c
        labels = ([f"tc-ch{i}" for i in range(c)] + [f"rms-ch{i}" for i in range(c)]
                  + ([f"hg-ch{i}" for i in range(c)] if hg else []))
        self._outlet("features", len(labels), self.fs / bs, self.pylsl.cf_float32, labels,
                     "count|counts", "NeuralFeatures", "NeuralFeatures")
        counts = np.asarray(fb.counts, np.float32).reshape(n, c)
        rms = np.asarray(fb.rms_q4, np.float32).reshape(n, c) / 16
        parts: list[npt.NDArray[np.floating[Any]]] = [counts, rms]
        if hg:
            parts.append(np.asarray(fb.hg_rms_q4, np.float32).reshape(n, c) / 16)
        rows = np.concatenate(parts, axis=1)
        for i in range(n):
            self._push("features", int(fb.first_sample) + (i + 1) * bs, rows[i].tolist())

    def _spikes(self, sb: Any) -> None:
        if len(sb.offset):
            self._outlet("spikes", 3, 0.0, self.pylsl.cf_int32, ["channel", "unit",
                         "amplitude"], "index|id|counts", "Spikes", "Spikes")
            for off, ch, u, a in zip(sb.offset, sb.channel, sb.unit, sb.amplitude, strict=False):
                self._push("spikes", int(sb.first_sample) + int(off), [int(ch), int(u), int(a)])
        if len(sb.unit_events):
            self._outlet("units", 1, 0.0, self.pylsl.cf_string, ["event"], "json", "Markers",
                         "Markers")
            for e in sb.unit_events:
                text = json.dumps({"kind": pb.UnitEventKind.Name(e.kind), "unit": e.unit,
                                   "other": e.other, "channel": e.channel})
                self._push("units", int(e.sample), [text])

    def _cursor(self, end_sample: int, x: Any, bin_samples: int) -> None:
        assert self.decoder is not None
        v = np.clip(self.decoder.step(x), -1.5, 1.5)
        bin_s = bin_samples / self.fs if self.fs else 0.02
        pos = self.cursor.move(v, bin_s)
        self._outlet("cursor", 4, 1.0 / bin_s, self.pylsl.cf_float32, ["x", "y", "vx", "vy"],
                     "workspace|full_speed", "Position", "Cursor")
        self._push("cursor", end_sample, [float(pos[0]), float(pos[1]), float(v[0]),
                                          float(v[1])])
