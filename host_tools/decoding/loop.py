"""The BCI loop on the host: one decoded bin → one cursor step → one task step.

Blocks:

- **calibration** (open loop): the cursor moves by itself at the ideal velocity toward each
  target (``task.ideal_velocity``); the person (or simulated user) intends that movement, so
  (features, ideal velocity) pairs are the training set;
- **closed loop**: the decoder's velocity moves the cursor — through the readout BCI cursors
  use (e.g. Willett et al. 2019's smoothing α and gain β): ``u ← α·u + (1 − α)·v_decoded``,
  the cursor moving by ``speed·u`` (``speed`` is β in workspace units per second). Each bin also
  records the ReFIT
  intention label (Gilja et al. 2012): the decoded velocity rotated toward the target (its
  speed kept), zero while on the target — a second calibration set gathered under control.

Everything a block did is kept per bin (``BlockLog``) for refitting, reports and the session
file. Sample → cursor latency is defined as in the BCI literature, from the bin's *last* sample
(the earliest moment the bin could be decoded) to the cursor update: the host's
CLOCK_MONOTONIC at the update minus the hub's arrival time of that sample (one machine in HIL;
``features.Bin.t_sample_ns``). From the bin's *first* sample it is one bin length more. The
parts: ``block`` (the bin's last sample → the arrival of the hub block that completed it),
``hub_link`` (→ the packet at the host: the hub's processing, its scheduler, the radio, the
host's BLE stack) and ``host`` (→ the cursor update: bin assembly, decoding, the task).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host_tools.decoding.base import F64, Decoder
from host_tools.decoding.features import Bin
from host_tools.decoding.task import Cursor, Task, ideal_velocity

log = logging.getLogger(__name__)


def refit_label(decoded: F64, pos: F64, target: F64, on_target: bool) -> F64:
    """ReFIT's intention estimate: the decoded speed, pointed at the target; 0 on target."""
    if on_target:
        return np.zeros(2)
    d = np.asarray(target, np.float64) - pos
    dist = float(np.hypot(d[0], d[1]))
    speed = float(np.hypot(decoded[0], decoded[1]))
    out: F64 = d / dist * speed if dist > 0 else np.zeros(2)
    return out


@dataclass
class BlockLog:
    """Per-bin record of one block."""

    name: str
    mode: str                               # "calibration" | "closed"
    bin_s: float
    decoder: str | None = None              # the decoder's kind in closed loop
    bins: list[int] = field(default_factory=list)
    end_samples: list[int] = field(default_factory=list)  # hub sample index ending each bin
    x: list[F64] = field(default_factory=list)
    velocity: list[F64] = field(default_factory=list)   # what moved the cursor
    label: list[F64] = field(default_factory=list)      # intention (ideal or ReFIT)
    cursor: list[F64] = field(default_factory=list)
    target: list[F64] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    latency_bins: list[int] = field(default_factory=list)  # the bins latency_ms belongs to
    #: per bin with full timestamps: (block, hub_link, host) ms (module docstring)
    latency_parts_ms: list[tuple[float, float, float]] = field(default_factory=list)
    decode_us: list[float] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)
    task: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, F64]:
        def a(v: list[Any], k: int) -> F64:
            return np.asarray(v, np.float64).reshape(len(v), k) if v else np.zeros((0, k))
        nx = len(self.x[0]) if self.x else 0
        return {"bins": np.asarray(self.bins, np.float64),
                "end_sample": np.asarray(self.end_samples, np.float64), "x": a(self.x, nx),
                "velocity": a(self.velocity, 2), "label": a(self.label, 2),
                "cursor": a(self.cursor, 2), "target": a(self.target, 2),
                "latency_ms": np.asarray(self.latency_ms, np.float64),
                "latency_bins": np.asarray(self.latency_bins, np.float64)}

    def latency_summary(self) -> dict[str, Any]:
        """p50/p99/max of sample → cursor (from the bin's last sample), the same from its
        first sample, and p50/p99 of each part."""
        v = np.asarray(self.latency_ms)
        if not v.size:
            return {"p50": None, "p99": None, "max": None, "n": 0}

        def pct(a: Any, q: float) -> float:
            return round(float(np.percentile(a, q)), 2)

        out: dict[str, Any] = {"p50": pct(v, 50), "p99": pct(v, 99),
                               "max": round(float(v.max()), 2), "n": int(v.size),
                               "from_first_sample": {"p50": pct(v, 50) + self.bin_s * 1e3,
                                                     "p99": pct(v, 99) + self.bin_s * 1e3}}
        parts = np.asarray(self.latency_parts_ms).reshape(-1, 3)
        if len(parts):
            out["parts"] = {name: {"p50": pct(parts[:, i], 50), "p99": pct(parts[:, i], 99)}
                            for i, name in enumerate(("block", "hub_link", "host"))}
        return out


class CursorLoop:
    """Steps a task from bins. ``on_step(pos, target, velocity)`` runs after every update (the
    simulated user uses it to send its next intention; a display redraws)."""

    def __init__(self, task: Task, bin_s: float, *, speed: float = 1.0, smooth: float = 0.0,
                 on_step: Callable[[F64, F64, F64], None] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if not 0.0 <= smooth < 1.0 or speed <= 0:
            raise ValueError(f"want 0 ≤ smooth < 1 ({smooth}) and speed > 0 ({speed})")
        self.task, self.bin_s = task, bin_s
        self.cursor = Cursor(speed)
        self.smooth = smooth
        self._u = np.zeros(2)
        self.on_step = on_step
        self.clock_ns = clock_ns
        self.decoder: Decoder | None = None
        self.block: BlockLog | None = None
        self.blocks: list[BlockLog] = []
        self.skipped_bins = 0                # bins before any block, or of the wrong width

    def start_block(self, name: str, task: Task, decoder: Decoder | None) -> BlockLog:
        """Calibration when ``decoder`` is None, closed loop otherwise."""
        self.finish_block()
        self.task, self.decoder = task, decoder
        if decoder is not None:
            decoder.reset()
        self.cursor.pos = np.zeros(2)
        self._u = np.zeros(2)
        self.block = BlockLog(name, "calibration" if decoder is None else "closed", self.bin_s,
                              decoder=None if decoder is None else decoder.kind)
        return self.block

    def finish_block(self) -> BlockLog | None:
        b, self.block = self.block, None
        if b is not None:
            b.task = self.task.summary()
            b.task["latency_ms"] = b.latency_summary()
            self.blocks.append(b)
        return b

    def on_bin(self, b: Bin) -> None:
        blk = self.block
        if blk is None:
            self.skipped_bins += 1
            return
        pos, target = self.cursor.pos.copy(), self.task.target.copy()
        t0 = time.perf_counter()
        if self.decoder is None:
            v = ideal_velocity(pos, target, self.task.radius)
            label = v
        else:
            dec = np.clip(self.decoder.step(b.x), -1.5, 1.5)
            self._u = self.smooth * self._u + (1.0 - self.smooth) * dec
            v = self._u
            label = refit_label(dec, pos, target, self.task.on_target(pos))
        blk.decode_us.append((time.perf_counter() - t0) * 1e6)
        new = self.cursor.move(v, self.bin_s)
        event = self.task.update(new, self.bin_s)
        now = self.clock_ns()
        blk.bins.append(b.index)
        blk.end_samples.append(b.end_sample)
        blk.x.append(b.x)
        blk.velocity.append(np.asarray(v, np.float64))
        blk.label.append(label)
        blk.cursor.append(new.copy())
        blk.target.append(target)
        if b.t_sample_ns is not None:
            blk.latency_ms.append((now - b.t_sample_ns) / 1e6)
            blk.latency_bins.append(b.index)
            if b.t_block_ns is not None and b.t_rx_ns is not None:
                blk.latency_parts_ms.append(((b.t_block_ns - b.t_sample_ns) / 1e6,
                                             (b.t_rx_ns - b.t_block_ns) / 1e6,
                                             (now - b.t_rx_ns) / 1e6))
        if event is not None:
            blk.events.append((b.index, event))
        if self.on_step is not None:
            self.on_step(new, self.task.target, np.asarray(v, np.float64))
