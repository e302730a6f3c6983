"""Decoder inputs from the hub's packets, one vector per bin, as soon as the bin is complete.

Feature kinds:

- ``tc``: threshold crossings per channel per bin (``FeatureBins.counts``);
- ``units``: sorted spikes per unit per bin, binned on the host from the spike batches (unit
  ids as columns 0 … max_units−1, merges resolved as the hub reports them, one last column
  for spikes left unsorted). A sorted spike leaves the hub when its snippet completes (its
  peak + the snippet's post samples + the detector's look-ahead, ~1.5 ms at 30 kHz), so by
  default (``margin_s`` 0) a unit bin leaves with the block that ends it, as ``tc`` bins do,
  and a spike labelled after its bin left counts in the next bin — where it was labelled, as
  the hub's threshold crossings count where they were decided. ``margin_s`` > 0 waits that
  long past a bin's end instead (exact peak bins, one block more latency);
- ``hg``: high-gamma (70–150 Hz) band power per channel per bin (``FeatureBins.hg_rms_q4``, the
  hub's LFP path; ECoG mode).

Each bin carries when its last sample reached the hub (``t_sample_ns``, the hub's
CLOCK_MONOTONIC: the same clock as the host's on one machine), so sample → cursor latency is
the host's clock at the cursor update minus that; and, to say where the time goes, when the
hub block that completed it arrived (``t_block_ns``, the packet's ``hub_time_ns``) and when
the packet reached the host (``t_rx_ns``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host_tools.decoding.base import F64
from hub.wire import pb

log = logging.getLogger(__name__)

KINDS = ("tc", "units", "hg")


@dataclass
class Bin:
    index: int
    end_sample: int
    x: F64
    t_sample_ns: int | None      # hub CLOCK_MONOTONIC when the bin's last sample arrived
    t_block_ns: int | None = None    # … when the hub block that completed the bin arrived
    t_rx_ns: int | None = None       # host CLOCK_MONOTONIC when its packet was received


@dataclass
class BinAssembler:
    kind: str = "tc"
    max_units: int = 128
    margin_s: float = 0.0
    fs: float = 0.0
    bins_seen: int = 0
    missing_bins: int = 0        # bin indices skipped (shed, gaps): the decoder saw none
    unmodelled_spikes: int = 0   # units mode: ids ≥ max_units
    _next_bin: int | None = None
    _merged: dict[int, int] = field(default_factory=dict)
    _unit_counts: dict[int, F64] = field(default_factory=dict)   # bin → counts
    _pending: list[tuple[int, int, int | None]] = field(default_factory=list)
    _bin_samples: int = 0
    _origin: int = 0             # the sample where bin 0 starts (the hub pipeline's base)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature kind {self.kind!r}: want one of {', '.join(KINDS)}")

    @property
    def n_features(self) -> int | None:
        return self.max_units + 1 if self.kind == "units" else None

    def feed(self, env: pb.Envelope, t_rx_ns: int | None = None) -> list[Bin]:
        """Takes any packet (received at host time ``t_rx_ns``); returns the bins it
        completed, oldest first."""
        kind = env.WhichOneof("payload")
        if kind == "time_sync" and env.time_sync.sampling_frequency:
            self.fs = env.time_sync.sampling_frequency
        elif kind == "telemetry" and env.telemetry.sampling_frequency:
            self.fs = env.telemetry.sampling_frequency
        elif kind == "spikes" and self.kind == "units":
            self._add_spikes(env.spikes)
            # the spikes of a block come before its feature bins: the bins whose spikes are
            # all in leave now, not with the next feature packet (a bin later)
            out = self._release(env)
            for b in out:
                b.t_block_ns, b.t_rx_ns = (env.hub_time_ns or None), t_rx_ns
            return self._count(out)
        elif kind == "features":
            out = self._features(env)
            for b in out:
                b.t_block_ns, b.t_rx_ns = (env.hub_time_ns or None), t_rx_ns
            return out
        return []

    def _t_sample(self, env: pb.Envelope, end_sample: int) -> int | None:
        if not self.fs or not env.hub_time_ns:
            return None
        return int(env.hub_time_ns - (env.sample_index - end_sample) * 1e9 / self.fs)

    def _resolve(self, unit: int) -> int:
        seen = set()
        while unit in self._merged and unit not in seen:
            seen.add(unit)
            unit = self._merged[unit]
        return unit

    def _add_spikes(self, sb: Any) -> None:
        for e in sb.unit_events:
            if e.kind == pb.UNIT_MERGE:
                self._merged[int(e.other)] = int(e.unit)
        if not self._bin_samples:
            return                   # bins not known yet (no feature packet so far)
        samples = sb.first_sample + np.asarray(sb.offset, np.int64)
        for s, u in zip(samples.tolist(), sb.unit, strict=False):
            # bin indices count from the pipeline's base, not from sample 0 (a hub configured
            # after the stream started bins from where the configuration took effect)
            b = (s - self._origin) // self._bin_samples
            if self._next_bin is not None and b < self._next_bin:
                b = self._next_bin   # its bin already left: counted where it was labelled
            u = self._resolve(int(u))
            col = self.max_units if u < 0 else u
            if col > self.max_units:
                self.unmodelled_spikes += 1
                continue
            row = self._unit_counts.get(b)
            if row is None:
                row = self._unit_counts[b] = np.zeros(self.max_units + 1)
            row[col] += 1

    def _features(self, env: pb.Envelope) -> list[Bin]:
        fb = env.features
        n, c, bs = int(fb.n_bins), int(fb.n_channels), int(fb.bin_samples)
        if n == 0 or c == 0 or bs == 0:
            return []
        self._bin_samples = bs
        out: list[Bin] = []
        if self.kind == "units":
            self._origin = int(fb.first_sample) - int(fb.first_bin) * bs
            for i in range(n):
                b = int(fb.first_bin) + i
                end = int(fb.first_sample) + (i + 1) * bs
                self._pending.append((b, end, self._t_sample(env, end)))
            out = self._release(env)
        else:
            if self.kind == "tc":
                values = np.asarray(fb.counts, np.float64)
            else:
                if len(fb.hg_rms_q4) != n * c:
                    log.warning("feature packet without high-gamma power: is lfp=true set?")
                    return []
                values = np.asarray(fb.hg_rms_q4, np.float64) / 16.0
            if values.size != n * c:
                return []
            rows = values.reshape(n, c)
            for i in range(n):
                end = int(fb.first_sample) + (i + 1) * bs
                out.append(Bin(int(fb.first_bin) + i, end, rows[i].copy(),
                               self._t_sample(env, end)))
        return self._count(out)

    def _release(self, env: pb.Envelope) -> list[Bin]:
        """Units mode: the pending bins that ended ``margin_s`` before the packet's sample
        (their sorted spikes, sent when the snippet completes, are all in)."""
        out: list[Bin] = []
        margin = round(self.margin_s * self.fs) if self.fs else self._bin_samples
        while self._pending and self._pending[0][1] + margin <= env.sample_index:
            b, end, t = self._pending.pop(0)
            x = self._unit_counts.pop(b, None)
            out.append(Bin(b, end, np.zeros(self.max_units + 1) if x is None else x, t))
        for stale in [k for k in self._unit_counts if out and k <= out[-1].index]:
            del self._unit_counts[stale]
        return out

    def _count(self, out: list[Bin]) -> list[Bin]:
        for done in out:
            if self._next_bin is not None and done.index > self._next_bin:
                self.missing_bins += done.index - self._next_bin
            self._next_bin = done.index + 1
        self.bins_seen += len(out)
        return out
