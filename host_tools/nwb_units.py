"""The units table, in bounded memory.

The scan spills each spike under its key as the hub labelled it — (session, unit) for a sorted
spike, (-1, channel) for a threshold crossing — in arrival (time) order. A row of the table is
a sorted unit with the ids the hub merged into it, or a channel's crossings; its spikes are the
merge of its keys' spills, read one row at a time. Ragged columns (spike times, samples,
amplitudes, channels) are streamed row after row into HDF5, so memory holds one unit's spikes,
never the session's. Spikes inside reported implant gaps (samples the hub held, not measured)
are dropped and counted.

The sorter's late labels (UNIT_LABEL: a new unit names the spikes that founded it, sent earlier
unsorted or as an outlier of another unit) are applied: such a spike moves to its unit's row.
They are few (at most 8 per birth), so the moved spikes are held in memory; a label naming no
delivered spike (shed, or inside a gap) is counted and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pynwb import NWBFile
from pynwb.misc import Units

from host_tools.nwb_scan import Scan
from host_tools.nwb_series import Clock, compressed
from hub.wire import pb

log = logging.getLogger(__name__)
INF = 1 << 62


def in_gaps(gaps: dict[int, npt.NDArray[np.int64]], session: npt.NDArray[Any],
            sample: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which (session, sample) fall inside a gap range of their session."""
    out = np.zeros(np.shape(sample), bool)
    for si, g in gaps.items():
        if not g.size:
            continue
        m = np.flatnonzero(np.asarray(session) == si)
        x = np.asarray(sample)[m]
        i = np.searchsorted(g[:, 0], x, side="right") - 1
        ok = i >= 0
        out[m[ok]] = x[ok] < np.maximum.accumulate(g[:, 1])[i[ok]]
    return out


@dataclass
class Row:
    keys: list[tuple[int, int]]        # spill keys merged into this row
    kind: str                          # "sorted" | "threshold_crossings"
    session: int = -1
    unit: int = -1
    merged: list[int] = field(default_factory=list)
    count: int = 0
    channel: int = 0
    first: int = INF                   # first / last spike sample (sorted rows: one session)
    last: int = -1


class UnitRows:
    """The rows and a reader of their spikes (one row in memory at a time)."""

    def __init__(self, scan: Scan, candidates: dict[int, npt.NDArray[np.int64]]) -> None:
        """``candidates``: per session, (k, 2) sample ranges for which to learn whether any
        delivered spike falls inside (``self.hit``)."""
        self.scan = scan
        self.hit = {si: np.zeros(len(c), bool) for si, c in candidates.items()}
        self.gaps = scan.gap_ranges()
        self.births: dict[tuple[int, int], int] = {}
        self.retires: dict[tuple[int, int], int] = {}
        self.birth_channel: dict[tuple[int, int], int] = {}
        rows: dict[tuple[int, int], Row] = {}
        labels: dict[tuple[int, int, int], tuple[int, int]] = {}  # (session, sample, ch) → row
        for s in scan.session_list():
            into: dict[int, int] = {}
            raw_labels: list[tuple[int, int, int]] = []
            for sample, kind, u, other, ch, _si in s.unit_events:
                if u < 0:                      # not a unit id: nothing to name
                    continue
                if kind == pb.UNIT_LABEL:
                    raw_labels.append((sample, ch, u))
                elif kind == pb.UNIT_MERGE:
                    into[other] = u
                elif kind == pb.UNIT_BIRTH:
                    self.births.setdefault((s.index, u), sample)
                    self.birth_channel.setdefault((s.index, u), ch)
                elif kind == pb.UNIT_RETIRE:
                    self.retires[(s.index, u)] = sample

            def resolve(u: int, into: dict[int, int] = into) -> int:
                seen = set()
                while u in into and u not in seen:
                    seen.add(u)
                    u = into[u]
                return u
            ids = {k[1] for k in scan.spike_keys if k[0] == s.index} | {
                u for (si, u) in self.births if si == s.index} | {u for *_, u in raw_labels}
            for sample, ch, u in raw_labels:
                labels[(s.index, sample, ch)] = (s.index, resolve(u))
            for u in sorted(ids):
                r = resolve(u)
                row = rows.setdefault((s.index, r), Row([], "sorted", s.index, r))
                row.keys.append((s.index, u))
                if u != r:
                    row.merged.append(u)
                    b = self.births.get((s.index, u))
                    if b is not None:
                        self.births[(s.index, r)] = min(self.births.get((s.index, r), b), b)
        self.rows = [rows[k] for k in sorted(rows)]
        self.rows += [Row([k], "threshold_crossings", -1, -1) for k in sorted(scan.spike_keys)
                      if k[0] < 0]
        self._relabel(labels)
        self.dropped = 0
        for row in self.rows:                       # a pass: counts, channel, extent
            sp = self.spikes(row, count=True)
            row.count = int(sp.size)
            if sp.size:
                row.channel = int(np.bincount(sp["channel"]).argmax())
                row.first, row.last = int(sp["sample"].min()), int(sp["sample"].max())
                for si, c in candidates.items():
                    x = np.sort(sp["sample"][sp["session"] == si])
                    if x.size and c.size:
                        self.hit[si] |= np.searchsorted(x, c[:, 1]) > np.searchsorted(x, c[:, 0])
            elif row.kind == "sorted":
                row.channel = self.birth_channel.get((row.session, row.unit), 0)
            if row.kind == "threshold_crossings":
                row.channel = row.keys[0][1]
        self._cache: tuple[int, npt.NDArray[Any]] | None = None

    def _relabel(self, labels: dict[tuple[int, int, int], tuple[int, int]]) -> None:
        """One pass over the spills (one key in memory at a time): the spikes that late labels
        move to another row — taken out of their spill's row, held for the target row."""
        self.moved_out: dict[tuple[int, int], npt.NDArray[np.int64]] = {}
        self.moved_in: dict[tuple[int, int], list[npt.NDArray[Any]]] = {}
        self.labels_applied = self.labels_unmatched = 0
        if not labels:
            return
        row_of = {k: (r.session, r.unit) if r.kind == "sorted" else (-1, k[1])
                  for r in self.rows for k in r.keys}
        targets = set(row_of.values())
        matched: set[tuple[int, int, int]] = set()
        label_samples = np.unique(np.array([smp for _, smp, _ in labels], np.int64))
        for k, spill in self.scan.spike_keys.items():
            sp = np.asarray(spill.read(0, spill.rows))
            take = []
            for i in np.flatnonzero(np.isin(sp["sample"], label_samples)).tolist():
                se, smp, ch = int(sp["session"][i]), int(sp["sample"][i]), int(sp["channel"][i])
                to = labels.get((se, smp, ch))
                if to is None:
                    continue
                matched.add((se, smp, ch))
                if to != row_of[k] and to in targets:
                    take.append(i)
                    one = sp[i:i + 1].copy()
                    one["unit"] = to[1]
                    self.moved_in.setdefault(to, []).append(one)
            if take:
                self.moved_out[k] = np.array(take, np.int64)
                self.labels_applied += len(take)
        self.labels_unmatched = len(labels) - len(matched)
        if self.labels_applied or self.labels_unmatched:
            log.info("late labels: %d spike(s) moved to the unit that named them, %d naming no "
                     "delivered spike", self.labels_applied, self.labels_unmatched)

    def spikes(self, row: Row, count: bool = False) -> npt.NDArray[Any]:
        """The row's spikes (SPIKE_DTYPE), merged in time order, gap spikes removed, late
        labels applied."""
        parts = []
        for k in row.keys:
            spill = self.scan.spike_keys.get(k)
            if spill is None:                  # a unit born (or named) whose spikes never came
                continue
            sp = np.asarray(spill.read(0, spill.rows))
            out = self.moved_out.get(k)
            parts.append(np.delete(sp, out) if out is not None else sp)
        key = (row.session, row.unit) if row.kind == "sorted" else (-1, row.keys[0][1])
        parts += self.moved_in.get(key, [])
        sp = np.concatenate(parts) if parts else np.zeros(0, self.scan.spike_dtype)
        if len(parts) > 1:
            sp = sp[np.lexsort((sp["sample"], sp["session"]))]
        bad = in_gaps(self.gaps, sp["session"], sp["sample"])
        if count:
            self.dropped += int(bad.sum())
        return sp[~bad] if bad.any() else sp

    def ends(self) -> npt.NDArray[np.int64]:
        return np.cumsum([r.count for r in self.rows], dtype=np.int64)

    def column(self, read_row: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
               ) -> Callable[[int, int], npt.NDArray[Any]]:
        """Rows [a, b) of a ragged column's flat data, built row by row."""
        ends = self.ends()
        starts = ends - [r.count for r in self.rows]

        def read(a: int, b: int) -> npt.NDArray[Any]:
            out = []
            i = int(np.searchsorted(ends, a, side="right"))
            while i < len(self.rows) and starts[i] < b:
                if self._cache is None or self._cache[0] != i:
                    self._cache = (i, self.spikes(self.rows[i]))
                vals = read_row(self._cache[1])
                lo, hi = max(a, int(starts[i])) - int(starts[i]), min(b, int(ends[i])) - int(
                    starts[i])
                out.append(vals[lo:hi])
                i += 1
            return np.concatenate(out)
        return read


def shed_candidates(scan: Scan, ledger: list[dict[str, Any]]
                    ) -> dict[int, npt.NDArray[np.int64]]:
    """Per session: gap and spike-stream shed ranges (candidates to cut from obs_intervals)."""
    out: dict[int, list[tuple[int, int]]] = {s.index: [] for s in scan.session_list()}
    for r in ledger:
        if r["stream"] in (pb.STREAM_UNSPECIFIED, pb.STREAM_SPIKES) and r["session"] in out:
            out[r["session"]].append((r["first_sample"], r["end_sample"]))
    return {k: np.array(v, np.int64).reshape(-1, 2) for k, v in out.items()}


def up_intervals(scan: Scan, candidates: dict[int, npt.NDArray[np.int64]], units: UnitRows
                 ) -> dict[int, list[tuple[int, int]]]:
    """Per session: sample ranges where the spike stream was up — the session's data extent
    minus gaps and spike-stream shed ranges that lost the whole range (a range in which some
    spikes were still delivered was observed, only partly shed)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for s in scan.session_list():
        if s.first_sample is None:
            continue
        c = candidates.get(s.index, np.zeros((0, 2), np.int64))
        cuts = [(int(a), int(b)) for (a, b), hit in zip(c, units.hit.get(s.index, []),
                                                         strict=False) if not hit]
        iv, lo = [], s.first_sample
        for a, b in sorted(cuts):
            if a > lo:
                iv.append((lo, min(a, s.last_sample)))
            lo = max(lo, b)
        if lo < s.last_sample:
            iv.append((lo, s.last_sample))
        out[s.index] = [(a, b) for a, b in iv if b > a]
    return out


def add_units(nwbfile: NWBFile, scan: Scan, clock: Clock, ledger: list[dict[str, Any]],
              n_electrodes: int, waveform_means: Callable[[UnitRows], Any]) -> int:
    cand = shed_candidates(scan, ledger)
    ur = UnitRows(scan, cand)
    if ur.dropped:
        log.warning("%d spike(s) inside reported implant gaps (held samples) dropped",
                    ur.dropped)
    scan.spikes_in_gaps = ur.dropped
    scan.late_labels = {"applied": ur.labels_applied, "unmatched": ur.labels_unmatched}
    up = up_intervals(scan, cand, ur)
    obs: list[list[float]] = []
    obs_end: list[int] = []
    for row in ur.rows:
        if row.kind == "sorted":
            key = (row.session, row.unit)
            lo = min(ur.births.get(key, INF), row.first)
            hi = max(ur.retires[key], row.last + 1) if key in ur.retires else INF
            lo = lo if lo < INF else -INF
            ivs = [(row.session, max(x, lo), min(y, hi)) for x, y in up.get(row.session, [])
                   if min(y, hi) > max(x, lo)]
        else:
            ivs = [(se, x, y) for se, lst in up.items() for x, y in lst]
        for se, x, y in ivs:
            t = clock.seconds([se, se], [x, y])
            obs.append([float(t[0]), float(t[1])])
        obs_end.append(len(obs))
    n = len(ur.rows)
    fs = [s.fs for s in scan.session_list() if s.fs]
    units = Units(name="units", description=(
        "sorted units (the hub's online sorter, merges and late labels applied as it reported "
        "them) and, per "
        "channel, threshold crossings without a unit; spike times on the host clock"),
        id=list(range(n)), resolution=1.0 / max(fs) if fs else None)
    ends = ur.ends()
    total = int(ends[-1]) if n else 0
    cols: list[tuple[str, str, Callable[[npt.NDArray[Any]], Any], Any]] = [
        ("spike_times", "spike times (s)",
         lambda sp: clock.seconds(sp["session"], sp["sample"]), np.float64),
        ("spike_samples", "hub sample index of each spike (exact)",
         lambda sp: sp["sample"].astype(np.int64), np.int64),
        ("spike_amplitudes", "filtered peak, ADC counts",
         lambda sp: sp["amplitude"].astype(np.int32), np.int32),
        ("spike_channels", "hub channel of each spike",
         lambda sp: sp["channel"].astype(np.int32), np.int32),
        ("spike_sessions", "hub session of each spike (index into time_sync_fits' "
                           "hub_session; sample indices continue across hub restarts)",
         lambda sp: sp["session"].astype(np.int16), np.int16)]
    for name, desc, fn, dt in cols:
        units.add_column(name=name, description=desc,
                         data=compressed(ur.column(fn), (total,), dt, shuffle=True),
                         index=ends.tolist())
    units.add_column(name="obs_intervals", description="where the spike stream was up (s)",
                     data=np.array(obs, np.float64).reshape(-1, 2), index=obs_end)
    chan = [r.channel for r in ur.rows]
    if n_electrodes and n and max(chan) < n_electrodes:
        units.add_column(name="electrodes", description="the unit's main channel",
                         data=chan, index=list(range(1, n + 1)), table=nwbfile.electrodes)
    units.add_column(name="kind", description="sorted unit or a channel's threshold crossings",
                     data=[r.kind for r in ur.rows])
    units.add_column(name="hub_unit", description="the hub's unit id (-1: crossings)",
                     data=[r.unit for r in ur.rows])
    units.add_column(name="hub_session", description="hub session index (-1: all)",
                     data=[r.session for r in ur.rows])
    units.add_column(name="merged_ids", description="hub unit ids merged into this one",
                     data=[",".join(map(str, sorted(r.merged))) for r in ur.rows])
    units.add_column(name="channel", description="main hub channel", data=chan)
    wmean = waveform_means(ur)
    if wmean is not None:
        units.add_column(name="waveform_mean", description=(
            "mean spike-band waveform on the peak channel over the delivered snippets "
            "(volts; NaN: no snippet delivered)"), data=wmean)
    nwbfile.units = units
    return n
