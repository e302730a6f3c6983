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

from host_tools.nwb_scan import Scan
from host_tools.nwb_series import Clock
from host_tools.nwb_units import UnitRows, add_units
from host_tools.receiver import CLASS_NAMES, SHED_REASONS
from hub.wire import pb

log = logging.getLogger(__name__)

#: UNIT_LABEL (the sorter's late labels) is recorded here, and applied to the units table: the
#: spike it names moves to the row of its (merge-resolved) unit
UNIT_EVENT_KINDS: dict[int, str] = {pb.UNIT_BIRTH: "birth", pb.UNIT_MERGE: "merge",
                                    pb.UNIT_RETIRE: "retire", pb.UNIT_LABEL: "label"}
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
    out = {"units": add_units(nwbfile, scan, clock, ledger, n_electrodes,
                              lambda ur: _waveform_means(scan, ur)),
           "ledger_rows": len(ledger), "spikes_in_gaps_dropped": scan.spikes_in_gaps,
           "late_labels": scan.late_labels, "malformed_envelopes": {
               "dropped_by_receiver": scan.rx.out_of_range}}
    add_ledger(nwbfile, ledger, clock)
    ev = [e for s in scan.session_list() for e in s.unit_events]
    if ev:
        a = np.array(ev, np.int64)
        ecephys.add(table("unit_events", "the online sorter's unit lifecycle as the hub "
                                         "reported it (merge: `unit` absorbed `other`)", {
            "time": ("host seconds", clock.seconds(a[:, 5], a[:, 0])),
            "sample": ("hub sample index", a[:, 0]),
            "session": ("hub session (index into time_sync_fits)", a[:, 5]),
            "kind": ("birth, merge, retire or label", [UNIT_EVENT_KINDS.get(int(k), str(k))
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


def _volts(scan: Scan) -> float:
    g = max((s.probe.uv_per_count for s in scan.session_list() if s.probe is not None),
            default=0.0)
    return g * 1e-6 if g > 0 else 1.0


def _waveform_means(scan: Scan, ur: UnitRows) -> npt.NDArray[np.float64] | None:
    from host_tools.nwb_writer import snippet_means

    acc = snippet_means(scan)
    if not acc:
        return None
    ns = len(next(iter(acc.values()))[0])
    if any(len(v[0]) != ns for v in acc.values()):
        return None                     # snippet length changed mid-session: no single mean
    out = np.full((len(ur.rows), ns), np.nan)
    for i, r in enumerate(ur.rows):
        if r.kind == "sorted":
            ids = {r.unit, *r.merged}
            parts = [v for (s_, u_, _c), v in acc.items() if s_ == r.session and u_ in ids]
        else:
            parts = [v for (_s, u_, c_), v in acc.items() if u_ < 0 and c_ == r.channel]
        n = sum(p[1] for p in parts)
        if n:
            out[i] = sum(p[0] for p in parts) / n
    return out * _volts(scan)


def add_hub_tables(hub: ProcessingModule, scan: Scan, clock: Clock) -> None:
    from host_tools.nwb_hubtables import add_hub_tables as add

    add(hub, scan, clock)


