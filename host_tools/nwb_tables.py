"""The NWB tables: units (with obs_intervals and the sorter's merges applied), the shed/gap
ledger (``intervals/shed_and_gaps``), and the hub's side of the session in ``processing/hub``
(telemetry, commands and results, accounting, logs, link throughput, packets and latency, time
sync, configuration, raw block index)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from hdmf.backends.hdf5.h5_utils import H5DataIO
from hdmf.common import DynamicTable, VectorData
from pynwb import NWBFile, ProcessingModule
from pynwb.epoch import TimeIntervals
from pynwb.misc import Units

from host_tools.nwb_scan import Scan
from host_tools.nwb_series import Clock
from host_tools.receiver import CLASS_NAMES, SHED_REASONS
from hub.wire import pb

log = logging.getLogger(__name__)

UNIT_EVENT_KINDS: dict[int, str] = {pb.UNIT_BIRTH: "birth", pb.UNIT_MERGE: "merge",
                                    pb.UNIT_RETIRE: "retire"}
STREAM_NAMES: dict[int, str] = {**{int(k): v for k, v in CLASS_NAMES.items()}, 0: "all"}
DOWN = {pb.SHED_IMPLANT_GAP, pb.SHED_HUB_RESTART, pb.SHED_STOPPED, pb.SHED_OUTAGE}


def _data(a: Any) -> Any:
    """Compress numeric columns of more than a few rows; strings go as lists."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iufb" and arr.size > 64:
        return H5DataIO(arr, compression="gzip", compression_opts=4)
    return arr.tolist() if arr.dtype.kind in "UO" else arr


def table(name: str, description: str, cols: dict[str, tuple[str, Any]]) -> DynamicTable:
    n = len(next(iter(cols.values()))[1]) if cols else 0
    return DynamicTable(name=name, description=description, id=np.arange(n),
                        columns=[VectorData(name=k, description=d, data=_data(v))
                                 for k, (d, v) in cols.items()])


def add_all(nwbfile: NWBFile, ecephys: ProcessingModule, hub: ProcessingModule, scan: Scan,
            clock: Clock, n_electrodes: int) -> dict[str, Any]:
    ledger = ledger_rows(scan)
    out = {"units": add_units(nwbfile, scan, clock, ledger, n_electrodes),
           "ledger_rows": len(ledger), "spikes_in_gaps_dropped": scan.spikes_in_gaps}
    add_ledger(nwbfile, ledger, clock)
    ev = [e for s in scan.session_list() for e in s.unit_events]
    if ev:
        a = np.array(ev, np.int64)
        ecephys.add(table("unit_events", "the online sorter's unit lifecycle as the hub "
                                         "reported it (merge: `unit` absorbed `other`)", {
            "time": ("host seconds", clock.seconds(a[:, 5], a[:, 0])),
            "sample": ("hub sample index", a[:, 0]),
            "session": ("hub session (index into time_sync_fits)", a[:, 5]),
            "kind": ("birth, merge or retire", [UNIT_EVENT_KINDS.get(int(k), str(k))
                                                for k in a[:, 1]]),
            "unit": ("hub unit id", a[:, 2]), "other": ("merge: the absorbed id", a[:, 3]),
            "channel": ("hub channel", a[:, 4])}))
    out["unit_events"] = len(ev)
    add_hub_tables(hub, scan, clock)
    return out


# ---------------------------------------------------------------- the ledger
def ledger_rows(scan: Scan) -> list[dict[str, Any]]:
    """Every range the hub reported shed or missing (contiguous ones merged), and hub restarts
    the host saw as a session change."""
    rows: list[dict[str, Any]] = []
    for s in scan.session_list():
        rs = scan.rx.sessions.get(s.session_id)
        if rs is None:
            continue
        for r in sorted(rs.shed_ranges, key=lambda r: (r.stream, r.reason, tuple(r.channels),
                                                       r.first_sample)):
            chans = tuple(int(c) for c in r.channels)
            prev = rows[-1] if rows else None
            if (prev is not None and prev["session"] == s.index and prev["stream"] == r.stream
                    and prev["reason"] == r.reason and prev["channels"] == chans
                    and prev["first_sample"] <= r.first_sample <= prev["end_sample"]):
                prev["end_sample"] = max(prev["end_sample"], int(r.end_sample))
                prev["items"] += int(r.items)
                prev["packets"] += int(r.packets)
                continue
            rows.append({"session": s.index, "stream": int(r.stream), "reason": int(r.reason),
                         "channels": chans, "first_sample": int(r.first_sample),
                         "end_sample": int(r.end_sample), "items": int(r.items),
                         "packets": int(r.packets)})
    for g in scan.rx.gaps():
        if g["reason"] == "hub_restart_seen_by_host":
            to = scan.sessions[g["to_session"]]
            rows.append({"session": to.index, "stream": pb.STREAM_UNSPECIFIED,
                         "reason": -1, "channels": (), "first_sample": int(g["first_sample"]),
                         "end_sample": int(g["end_sample"]), "items": 0, "packets": 0})
    return rows


def add_ledger(nwbfile: NWBFile, rows: list[dict[str, Any]], clock: Clock) -> None:
    ti = TimeIntervals(name="shed_and_gaps", description=(
        "every sample range the hub reported shed (did not fit the link, queue full, link "
        "outage) or missing (implant-link gap, hub restart, stopped), per stream; stream 'all' "
        "is a gap in every stream. Nothing in these ranges was filled in."))
    for k, d in (("hub_session", "hub session (index into processing/hub/time_sync_fits)"),
                 ("stream", "class: events, feature_bins, snippets, raw, … or all"),
                 ("reason", "why (hub ShedReason, or hub_restart_seen_by_host)"),
                 ("first_sample", "hub sample index, first of the range"),
                 ("end_sample", "hub sample index, end of the range (exclusive)"),
                 ("items", "items shed (events, bins, snippets, raw channel-samples)"),
                 ("packets", "packets shed"),
                 ("channels", "raw: the channels shed (empty: all)")):
        ti.add_column(k, d)
    for r in sorted(rows, key=lambda r: (r["session"], r["first_sample"])):
        t = clock.seconds([r["session"]] * 2, [r["first_sample"], r["end_sample"]])
        ti.add_interval(start_time=float(t[0]), stop_time=float(max(t[1], t[0])),
                        hub_session=r["session"], stream=STREAM_NAMES.get(r["stream"], "?"),
                        reason=SHED_REASONS.get(r["reason"], "hub_restart_seen_by_host"),
                        first_sample=r["first_sample"], end_sample=r["end_sample"],
                        items=r["items"], packets=r["packets"],
                        channels=",".join(map(str, r["channels"])))
    nwbfile.add_time_intervals(ti)


# ---------------------------------------------------------------- units
def _up_intervals(scan: Scan, ledger: list[dict[str, Any]], spikes: npt.NDArray[Any]
                  ) -> dict[int, list[tuple[int, int]]]:
    """Per session: sample ranges where the spike stream was up — the session's data extent
    minus gaps and spike-stream shed ranges that lost the whole range (a range in which
    some spikes were still delivered was observed, only partly shed)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for s in scan.session_list():
        if s.first_sample is None:
            continue
        mine = np.sort(spikes["sample"][spikes["session"] == s.index])
        cuts = []
        for r in ledger:
            if r["session"] != s.index or r["stream"] not in (pb.STREAM_UNSPECIFIED,
                                                              pb.STREAM_SPIKES):
                continue
            a, b = r["first_sample"], r["end_sample"]
            inside = np.searchsorted(mine, b) - np.searchsorted(mine, a)
            if inside == 0:
                cuts.append((a, b))
        iv, lo = [], s.first_sample
        for a, b in sorted(cuts):
            if a > lo:
                iv.append((lo, min(a, s.last_sample)))
            lo = max(lo, b)
        if lo < s.last_sample:
            iv.append((lo, s.last_sample))
        out[s.index] = [(a, b) for a, b in iv if b > a]
    return out


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


def add_units(nwbfile: NWBFile, scan: Scan, clock: Clock, ledger: list[dict[str, Any]],
              n_electrodes: int) -> int:
    sp = np.asarray(scan.spikes.array())
    inside = in_gaps(scan.gap_ranges(), sp["session"], sp["sample"])
    if inside.any():
        log.warning("%d spike(s) inside reported implant gaps (held samples) dropped",
                    int(inside.sum()))
        scan.spikes_in_gaps = int(inside.sum())
        sp = sp[~inside]
    up = _up_intervals(scan, ledger, sp)
    # resolve merges per session: a spike's unit as the hub knows it now
    unit = sp["unit"].astype(np.int64).copy()
    births: dict[tuple[int, int], int] = {}
    retires: dict[tuple[int, int], int] = {}
    merged: dict[tuple[int, int], list[int]] = {}
    birth_channel: dict[tuple[int, int], int] = {}
    for s in scan.session_list():
        into: dict[int, int] = {}
        for sample, kind, u, other, _ch, _si in s.unit_events:
            if kind == pb.UNIT_MERGE:
                into[other] = u
            elif kind == pb.UNIT_BIRTH:
                births.setdefault((s.index, u), sample)
                birth_channel.setdefault((s.index, u), _ch)
            elif kind == pb.UNIT_RETIRE:
                retires[(s.index, u)] = sample

        def resolve(u: int, into: dict[int, int] = into) -> int:
            seen = set()
            while u in into and u not in seen:
                seen.add(u)
                u = into[u]
            return u
        for o in into:
            r = resolve(o)
            merged.setdefault((s.index, r), []).append(o)
            if (s.index, o) in births:
                births[(s.index, r)] = min(births.get((s.index, r), births[(s.index, o)]),
                                           births[(s.index, o)])
        m = sp["session"] == s.index
        if into and m.any():
            uniq, inv = np.unique(unit[m], return_inverse=True)
            unit[m] = np.array([resolve(int(u)) for u in uniq], np.int64)[inv]
    # rows: sorted units (session, unit), then threshold crossings per channel
    sorted_keys = sorted({(int(a), int(b)) for a, b in zip(sp["session"][unit >= 0],
                                                           unit[unit >= 0], strict=True)})
    sorted_keys += [k for k in sorted(births) if k not in set(sorted_keys)
                    and k[1] not in {o for v in merged.values() for o in v}]
    xing = sorted({int(c) for c in sp["channel"][unit < 0]})
    row_of = {k: i for i, k in enumerate(sorted_keys)}
    row = np.empty(sp.size, np.int64)
    srt = unit >= 0
    if srt.any():
        keys = sp["session"][srt].astype(np.int64) * (1 << 32) + unit[srt]
        lut = {s * (1 << 32) + u: i for (s, u), i in row_of.items()}
        uk, inv = np.unique(keys, return_inverse=True)
        row[srt] = np.array([lut[int(k)] for k in uk], np.int64)[inv]
    xrow = {c: len(sorted_keys) + i for i, c in enumerate(xing)}
    if (~srt).any():
        uc, inv = np.unique(sp["channel"][~srt], return_inverse=True)
        row[~srt] = np.array([xrow[int(c)] for c in uc], np.int64)[inv]
    times = clock.seconds(sp["session"], sp["sample"])
    order = np.lexsort((times, row))
    n_rows = len(sorted_keys) + len(xing)
    ends = np.searchsorted(row[order], np.arange(n_rows), side="right")
    # main channel per row: the most frequent spike channel (a crossing row: its channel)
    chan = np.zeros(n_rows, np.int64)
    for i in range(n_rows):
        a, b = (ends[i - 1] if i else 0), ends[i]
        if b > a:
            chan[i] = np.bincount(sp["channel"][order[a:b]]).argmax()
    for c, i in xrow.items():
        chan[i] = c
    for i, key in enumerate(sorted_keys):            # a unit born but never seen firing
        if ends[i] == (ends[i - 1] if i else 0) and key in birth_channel:
            chan[i] = birth_channel[key]
    obs, obs_end = [], []
    inf = 1 << 62
    for i in range(n_rows):
        a, b = (ends[i - 1] if i else 0), ends[i]
        smp = sp["sample"][order[a:b]]
        if i < len(sorted_keys):
            sess, u = sorted_keys[i]
            lo, hi = births.get((sess, u), inf), retires.get((sess, u), -1)
            if smp.size:
                lo, hi = min(lo, int(smp.min())), max(hi, int(smp.max()) + 1)
            lo = lo if lo < inf else -inf
            hi = hi if (sess, u) in retires else inf
            ivs = [(sess, max(x, lo), min(y, hi)) for x, y in up.get(sess, [])
                   if min(y, hi) > max(x, lo)]
        else:
            ivs = [(se, x, y) for se, lst in up.items() for x, y in lst]
        for se, x, y in ivs:
            t = clock.seconds([se, se], [x, y])
            obs.append([float(t[0]), float(t[1])])
        obs_end.append(len(obs))
    units = Units(name="units", description=(
        "sorted units (the hub's online sorter, merges applied as it reported them) and, per "
        "channel, threshold crossings without a unit; spike times on the host clock"),
        id=list(range(n_rows)),
        resolution=1.0 / max(s.fs for s in scan.session_list()) if any(
            s.fs for s in scan.session_list()) else None)
    cols: list[tuple[str, str, Any, Any]] = [
        ("spike_times", "spike times (s)", times[order], ends),
        ("obs_intervals", "where the spike stream was up (s)",
         np.array(obs, np.float64).reshape(-1, 2), np.array(obs_end, np.int64)),
        ("spike_samples", "hub sample index of each spike (exact)", sp["sample"][order], ends),
        ("spike_amplitudes", "filtered peak, ADC counts", sp["amplitude"][order], ends),
        ("spike_channels", "hub channel of each spike", sp["channel"][order], ends)]
    for name, desc, data, index in cols:
        units.add_column(name=name, description=desc, data=_data(data),
                         index=np.asarray(index, np.int64).tolist())
    if n_electrodes and n_rows and int(chan.max()) < n_electrodes:
        units.add_column(name="electrodes", description="the unit's main channel",
                         data=chan.tolist(), index=list(range(1, n_rows + 1)),
                         table=nwbfile.electrodes)
    kinds = ["sorted"] * len(sorted_keys) + ["threshold_crossings"] * len(xing)
    units.add_column(name="kind", description="sorted unit or a channel's threshold crossings",
                     data=kinds)
    units.add_column(name="hub_unit", description="the hub's unit id (-1: crossings)",
                     data=[u for _, u in sorted_keys] + [-1] * len(xing))
    units.add_column(name="hub_session", description="hub session index (-1: all)",
                     data=[s for s, _ in sorted_keys] + [-1] * len(xing))
    units.add_column(name="merged_ids", description="hub unit ids merged into this one",
                     data=[",".join(map(str, sorted(merged.get(k, [])))) for k in sorted_keys]
                     + [""] * len(xing))
    units.add_column(name="channel", description="main hub channel", data=chan.tolist())
    wmean = _waveform_means(scan, sorted_keys, xing, merged)
    if wmean is not None:
        units.add_column(name="waveform_mean", description=(
            "mean spike-band waveform on the peak channel over the delivered snippets "
            "(volts; NaN: no snippet delivered)"), data=wmean * _volts(scan))
    nwbfile.units = units
    return n_rows


def _volts(scan: Scan) -> float:
    g = max((s.probe.uv_per_count for s in scan.session_list() if s.probe is not None),
            default=0.0)
    return g * 1e-6 if g > 0 else 1.0


def _waveform_means(scan: Scan, sorted_keys: list[tuple[int, int]], xing: list[int],
                    merged: dict[tuple[int, int], list[int]]) -> npt.NDArray[np.float64] | None:
    from host_tools.nwb_writer import snippet_means

    acc = snippet_means(scan)
    if not acc:
        return None
    ns = len(next(iter(acc.values()))[0])
    if any(len(v[0]) != ns for v in acc.values()):
        return None                     # snippet length changed mid-session: no single mean
    out = np.full((len(sorted_keys) + len(xing), ns), np.nan)
    for i, (sess, u) in enumerate(sorted_keys):
        ids = {u, *merged.get((sess, u), [])}
        parts = [v for (s_, u_, _c), v in acc.items() if s_ == sess and u_ in ids]
        n = sum(p[1] for p in parts)
        if n:
            out[i] = sum(p[0] for p in parts) / n
    for j, c in enumerate(xing):
        parts = [v for (_s, u_, c_), v in acc.items() if u_ < 0 and c_ == c]
        n = sum(p[1] for p in parts)
        if n:
            out[len(sorted_keys) + j] = sum(p[0] for p in parts) / n
    return out


def add_hub_tables(hub: ProcessingModule, scan: Scan, clock: Clock) -> None:
    from host_tools.nwb_hubtables import add_hub_tables as add

    add(hub, scan, clock)


