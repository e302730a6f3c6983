"""``processing/hub``: the hub and its link as tables and series — telemetry, commands and
their results, per-class accounting, hub logs, connections, link throughput, every data packet
with its latency, the time-sync points and fits, the hub's configuration, the raw block index."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hdmf.common import DynamicTable, VectorData
from pynwb import ProcessingModule, TimeSeries

from host_tools.nwb_scan import LINK_BIN_NS, Scan
from host_tools.nwb_series import Clock, compressed, raw_groups, raw_series_name
from host_tools.nwb_tables import table
from host_tools.receiver import CLASS_NAMES

STREAMS: dict[int, str] = {int(k): v for k, v in CLASS_NAMES.items()}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v)
    return out


def add_hub_tables(hub: ProcessingModule, scan: Scan, clock: Clock) -> None:
    sessions = scan.session_list()
    # telemetry: one row per packet; counters per class flattened into columns
    if scan.telemetry:
        keys = list(dict.fromkeys(k for r in scan.telemetry for k in r))
        cols = {"time": ("host seconds at receipt",
                         clock.host_seconds([r["t_ns"] for r in scan.telemetry]))}
        for k in keys:
            if k == "t_ns":
                continue
            v = [r.get(k, 0) for r in scan.telemetry]
            if all(isinstance(x, float) and math.isnan(x) for x in v):
                continue                        # e.g. no temperature sensor on this hub
            cols[k] = (k.replace("_", " "), np.asarray(v, np.float64 if any(
                isinstance(x, float) for x in v) else np.int64))
        hub.add(table("telemetry", "the hub's telemetry packets (about 1/s): CPU, link, "
                                   "per-class produced/sent/shed/queued counters", cols))
    # commands joined with their results (request id, in order)
    results = list(scan.results)
    rows: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for c in scan.commands:
        r = next((x for x in results if x["request_id"] == c["request_id"]), None)
        if r is not None:
            results.remove(r)
        rows.append((c, r))
    rows += [(None, r) for r in results]
    if rows:
        nan = math.nan
        hub.add(table("commands", "commands the host sent and the hub's result for each", {
            "request_id": ("request id", [(c or r or {}).get("request_id", -1)
                                          for c, r in rows]),
            "command": ("command", [(c or r or {}).get("command", "") for c, r in rows]),
            "sent_time": ("host seconds (NaN: not sent by this recording)",
                          [clock.host_seconds(c["t_ns"]).item() if c else nan for c, _ in rows]),
            "detail": ("the command as JSON", [c["detail"] if c else "" for c, _ in rows]),
            "result_code": ("RESULT_OK or the error (empty: no result received)",
                            [r["code"] if r else "" for _, r in rows]),
            "result_message": ("the hub's message", [r["message"] if r else "" for _, r in rows]),
            "result_time": ("host seconds (NaN: none)",
                            [clock.host_seconds(r["t_ns"]).item() if r else nan
                             for _, r in rows])}))
    acc = scan.rx.accounting()
    hub.add(table("accounting", "per class, all hub sessions: produced at the hub, delivered "
                                "to the host, shed (reported), queued at the last report, lost "
                                "in transit (packets), unaccounted (closed sessions) and "
                                "unclosed (sessions without a final report)", {
        "class": ("data class", list(acc)),
        **{k: (k.replace("_", " "), [acc[c][k] for c in acc])
           for k in ("produced", "delivered", "shed", "queued", "lost_packets", "unaccounted",
                     "unclosed")}}))
    if scan.logs:
        hub.add(table("hub_logs", "warnings and errors the hub sent", {
            "time": ("host seconds", clock.host_seconds([x["t_ns"] for x in scan.logs])),
            "level": ("Python logging level", [x["level"] for x in scan.logs]),
            "logger": ("logger", [x["logger"] for x in scan.logs]),
            "message": ("message", [x["message"] for x in scan.logs])}))
    if scan.connections:
        hub.add(table("connections", "connections to the hub as the host saw them", {
            "time": ("host seconds", clock.host_seconds([x["t_ns"] for x in scan.connections])),
            "event": ("connect or disconnect", [x["event"] for x in scan.connections]),
            "peer": ("the hub's address (TCP) or name (BLE)",
                     [str(x.get("address", x.get("name", ""))) for x in scan.connections])}))
    _link(hub, scan, clock)
    _time_sync(hub, scan, clock)
    cfg_rows = [(s.index, t, k, v) for s in sessions for t, cfg in s.configs
                for k, v in _flatten(cfg).items()]
    if cfg_rows:
        hub.add(table("hub_configuration", "the hub's configuration as its telemetry reported "
                                           "it, each time it changed (values as JSON)", {
            "hub_session": ("hub session index", [r[0] for r in cfg_rows]),
            "time": ("host seconds", clock.host_seconds([r[1] for r in cfg_rows])),
            "setting": ("setting", [r[2] for r in cfg_rows]),
            "value": ("value (JSON)", [r[3] for r in cfg_rows])}))
    groups = raw_groups(scan)
    if groups:
        names = [raw_series_name(i, g.channels) for i, g in enumerate(groups)]
        blk = np.concatenate([g.blocks for g in groups])
        first_row = np.concatenate([np.concatenate([[0], np.cumsum(g.blocks["n"][:-1])])
                                    for g in groups]).astype(np.int64)
        series = np.concatenate([np.full(g.blocks.size, i, np.uint16)
                                 for i, g in enumerate(groups)])
        hub.add(table("raw_blocks", "each delivered raw block: its series, hub session, first "
                                    "hub sample index, samples, first row in the series", {
            "series": ("acquisition series: " + ", ".join(f"{i} = {n}"
                                                          for i, n in enumerate(names)),
                       series),
            "hub_session": ("hub session index", blk["session"].astype(np.int32)),
            "first_sample": ("hub sample index", blk["first"].astype(np.int64)),
            "n_samples": ("samples", blk["n"].astype(np.int32)),
            "first_row": ("row in the series", first_row)}))


def _link(hub: ProcessingModule, scan: Scan, clock: Clock) -> None:
    if scan.link_seconds:
        bins = np.array(sorted(scan.link_seconds), np.int64)
        sec = np.maximum(0, (bins * LINK_BIN_NS - clock.t0_ns) // 1_000_000_000)
        bps = np.zeros(int(sec.max()) + 1)
        np.add.at(bps, sec, [scan.link_seconds[int(b)][0] * 8 for b in bins])
        hub.add(TimeSeries(name="LinkThroughput", data=bps, unit="bit/s", starting_time=0.0,
                           rate=1.0, description="bits received per second of the session "
                                                 "(chunks incl. framing)"))
    n = scan.packets.rows
    if n:
        fits = {si.index: si.fit for si in scan.session_list()}

        def col(fn: Any) -> Any:
            def read(a: int, b: int) -> Any:
                return fn(scan.packets.read(a, b))
            return read

        def latency(pk: Any) -> Any:
            lat = np.full(pk.size, np.nan)
            for si, fit in fits.items():
                m = pk["session"] == si
                if m.any():
                    lat[m] = (pk["host_ns"][m] - fit.to_host_ns(pk["sample_index"][m])) / 1e9
            return lat

        codes = ", ".join(f"{k} = {v}" for k, v in sorted(STREAMS.items()))
        streamed = {
            "time": ("host seconds at receipt", lambda pk: clock.host_seconds(pk["host_ns"]),
                     np.float64),
            "stream": (f"class ({codes})", lambda pk: pk["stream"].astype(np.uint8), np.uint8),
            "hub_session": ("hub session index", lambda pk: pk["session"].astype(np.int32),
                            np.int32),
            "sample_index": ("hub sample index (end of what it covers)",
                             lambda pk: pk["sample_index"].astype(np.int64), np.int64),
            "latency_s": ("seconds", latency, np.float64),
            "same_clock_latency_s": ("seconds", lambda pk: (pk["host_ns"] - pk["hub_time_ns"])
                                     / 1e9, np.float64)}
        hub.add(DynamicTable(
            name="data_packets", description=(
                "every data packet received (spikes, features, snippets, raw): latency_s = "
                "receipt − the time-sync fit's time of the packet's last sample (queueing + "
                "transit beyond the least-delayed time-sync packet); same_clock_latency_s = "
                "receipt − hub_time_ns, meaningful when hub and host share a clock"),
            id=compressed(lambda a, b: np.arange(a, b, dtype=np.int64), (n,), np.int64),
            columns=[VectorData(name=k, description=d, data=compressed(col(fn), (n,), dt,
                                                                       shuffle=True))
                     for k, (d, fn, dt) in streamed.items()]))


def _time_sync(hub: ProcessingModule, scan: Scan, clock: Clock) -> None:
    """One row per hub session and implant clock epoch; the fitted points with residuals."""
    pts: list[tuple[int, int, int, float]] = []
    fits: dict[str, list[Any]] = {k: [] for k in (
        "hub_session", "hub_session_id", "source", "epoch", "first_sample", "points",
        "fs_nominal", "ns_per_sample", "drift_ppm", "residual_p50_ms", "residual_max_ms",
        "hub_to_host")}
    for s in scan.session_list():
        pieces = getattr(s.fit, "pieces", None) or [(s.first_sample or 0, s.fit)]
        for start, f in pieces:
            summ = f.summary()
            fits["hub_session"].append(s.index)
            fits["hub_session_id"].append(f"{s.session_id:08x}")
            fits["source"].append(s.fit_source)
            fits["epoch"].append(int(summ.get("epoch", 0)))
            fits["first_sample"].append(int(start))
            fits["points"].append(int(summ.get("points", 0)))
            fits["fs_nominal"].append(float(s.fs))
            fits["ns_per_sample"].append(float(summ.get("ns_per_sample", 1e9 / (s.fs or 3e4))))
            d = summ.get("drift_ppm")
            fits["drift_ppm"].append(float(d) if d is not None else math.nan)
            fits["residual_p50_ms"].append(float(summ.get("residual_us_p50", math.nan)) / 1e3)
            fits["residual_max_ms"].append(float(summ.get("residual_us_max", math.nan)) / 1e3)
            fits["hub_to_host"].append(str(summ.get("hub_to_host", {}).get("method", "")))
            if hasattr(f, "residuals_ns") and hasattr(f, "hub_to_host"):
                x, r = f.residuals_ns()
                y = f.hub_to_host.map(f.to_hub_ns(x) + r.astype(np.int64))
                pts += [(s.index, int(a), int(b), float(c) / 1e6)
                        for a, b, c in zip(x, y, r, strict=True)]
    hub.add(table("time_sync_fits", "per hub session and implant clock epoch: the line mapping "
                                    "hub samples to time (host_tools.timesync), and how the hub "
                                    "clock maps to the host's", {
        k: (k.replace("_", " "), v) for k, v in fits.items()}))
    if pts:
        a = np.array(pts, np.float64)
        hub.add(table("time_sync_points", "time-sync points: hub sample, time (host clock), and "
                                          "the residual (above the fitted line: delay)", {
            "hub_session": ("hub session index", a[:, 0].astype(np.int64)),
            "sample_index": ("hub sample index", np.array([p[1] for p in pts], np.int64)),
            "time": ("host seconds", clock.host_seconds(np.array([p[2] for p in pts],
                                                                 np.int64))),
            "residual_ms": ("point − fit (ms)", a[:, 3])}))
