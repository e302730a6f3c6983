"""A cursor session (``hubctl cursor``'s ``.npz``) into NWB: ``processing/bci``.

    hubctl cursor … --nwb SESSION.nwb
    python -m host_tools.decoding.session_nwb SESSION.npz SESSION.nwb

If ``SESSION.nwb`` exists it must be a recording of the same hub session (``hubctl record
--nwb`` or ``hubctl decode``): the module is appended (pynwb, mode ``a``) and every time is on
the recording's clock — a bin's end sample through the drift-corrected time-sync line of that
hub session (``processing/hub/time_sync_points``: each point's time less its residual). If it
does not exist, a new file is written (beside it, then renamed) whose time zero is the start of
the first block's first bin on the hub's sample clock; ``session_start_time`` is the host's wall
clock when that block started.

``processing/bci`` holds, per bin (timestamps: the time of the bin's last sample):

- ``features`` (bins × N: threshold crossings or sorted spikes per bin, or high-gamma RMS),
- ``decoded_velocity`` (what moved the cursor, × ``--speed`` = workspace units/s),
- ``intention`` (the autopilot's velocity in calibration, ReFIT's estimate in closed loop),
- ``cursor`` and ``target`` (``SpatialSeries``, workspace ±1),
- ``latency`` (sample → cursor update, the bins where it was measured);

and two tables: ``blocks`` (one row per block: mode, decoder, task, success rate, bits/s,
latency p50/p99) and ``trials`` (one row per trial or grid selection: block, outcome, target).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pynwb import NWBHDF5IO, NWBFile, ProcessingModule, TimeSeries
from pynwb.behavior import SpatialSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject

from host_tools.decoding.session import SESSION_FORMAT
from host_tools.nwb_record import add_subject_arguments
from host_tools.nwb_writer import NwbOptions

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
Seconds = Callable[[F64], F64]
FEATURE_UNITS = {"tc": "spikes per bin", "units": "spikes per bin",
                 "hg": "ADC counts RMS (70–150 Hz)"}


class SessionNwbError(ValueError):
    """The session file or the NWB file cannot take the session (wrong format, no shared hub
    session, a bci module already there)."""


def load_session(npz: Path) -> tuple[dict[str, Any], list[dict[str, F64]]]:
    """(meta, per-block arrays) of a session file (``host_tools.decoding.session``)."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != SESSION_FORMAT or "end_sample" not in "".join(z.files):
                raise SessionNwbError(f"{npz}: not a v1 cursor session with end samples")
            blocks = [{k: z[f"b{i}_{k}"] for k in (
                "bins", "end_sample", "x", "velocity", "label", "cursor", "target",
                "latency_ms", "latency_bins")} for i in range(len(meta["blocks"]))]
    except (KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, SessionNwbError):
            raise
        raise SessionNwbError(f"{npz}: not a readable cursor session ({e!r})") from e
    return meta, blocks


def recording_clock(nwbfile: NWBFile, hub_session: str) -> Seconds:
    """Hub sample → seconds in a recording: the time-sync line of ``hub_session``."""
    hub = nwbfile.processing.get("hub")
    if hub is None or "time_sync_points" not in hub.data_interfaces:
        raise SessionNwbError("the NWB file has no processing/hub/time_sync_points: "
                              "not a hubctl recording")
    fits = hub["time_sync_fits"].to_dataframe()
    idx = set(fits.loc[fits["hub_session_id"] == hub_session, "hub_session"].tolist())
    pts = hub["time_sync_points"].to_dataframe()
    pts = pts[pts["hub_session"].isin(idx)]
    if len(pts) < 2:
        raise SessionNwbError(f"the recording has no time sync for hub session {hub_session}: "
                              "a recording of another session?")
    x = pts["sample_index"].to_numpy(np.float64)
    y = pts["time"].to_numpy(np.float64) - pts["residual_ms"].to_numpy(np.float64) / 1e3
    slope, icept = np.polyfit(x - x[0], y, 1)
    return lambda s: np.asarray(slope * (s - x[0]) + icept, np.float64)


def add_bci(nwbfile: NWBFile, meta: dict[str, Any], blocks: list[dict[str, F64]],
            seconds: Seconds) -> dict[str, Any]:
    """Adds ``processing/bci`` (module docstring); returns counts."""
    if "bci" in nwbfile.processing:
        raise SessionNwbError("the NWB file already holds processing/bci")
    if not blocks or not sum(len(b["bins"]) for b in blocks):
        raise SessionNwbError("the session has no bins")
    bci = ProcessingModule(name="bci", description=(
        f"hubctl cursor: {meta['features']} features, hub session {meta['hub_session']}, "
        f"{len(blocks)} block(s)"))
    nwbfile.add_processing_module(bci)

    def cat(k: str) -> F64:
        return np.concatenate([b[k] for b in blocks])

    t = seconds(cat("end_sample"))
    ts = {"timestamps": t, "comments": "times: each bin's last sample"}
    bci.add(TimeSeries(name="features", data=cat("x"), unit=FEATURE_UNITS[meta["features"]],
                       description=f"decoder input per bin ({meta['features']}), "
                                   f"{meta['bin_s']} s bins", **ts))
    for name, key, desc in (
            ("decoded_velocity", "velocity", "velocity that moved the cursor (x, y); × speed "
                                             "= workspace units/s"),
            ("intention", "label", "intended velocity (x, y): the autopilot's in calibration, "
                                   "ReFIT's estimate in closed loop")):
        bci.add(TimeSeries(name=name, data=cat(key), unit="a.u.", description=desc, **ts))
    for name, desc in (("cursor", "cursor position after the bin's update"),
                       ("target", "the target shown during the bin")):
        bci.add(SpatialSeries(name=name, data=cat(name), reference_frame="workspace centre "
                              "(0, 0), edges ±1 (workspace units)", description=desc,
                              unit="n.a.", **ts))
    offsets = np.cumsum([0] + [len(b["bins"]) for b in blocks])
    where = np.concatenate([o + np.searchsorted(b["bins"], b["latency_bins"])
                            for o, b in zip(offsets, blocks, strict=False)]).astype(np.int64)
    if len(where):
        bci.add(TimeSeries(name="latency", data=cat("latency_ms"), unit="seconds",
                           conversion=1e-3, timestamps=t[where],
                           description="sample → cursor update: the bin's last sample reaching "
                                       "the hub to the cursor moving (ms)"))
    _tables(bci, meta, blocks, seconds)
    return {"bins": len(t), "blocks": len(blocks),
            "trials": sum(len(b.get("events", [])) for b in meta["blocks"])}


def _tables(bci: ProcessingModule, meta: dict[str, Any], blocks: list[dict[str, F64]],
            seconds: Seconds) -> None:
    per_bin = float(meta["bin_s"]) * float(meta["fs"])        # samples per bin
    table = TimeIntervals(name="blocks", description="calibration and closed-loop blocks")
    trials = TimeIntervals(name="trials", description="trials (center-out) or selections "
                                                      "(grid) as the task ended them")
    for k, d in (("block_name", "block name"), ("mode", "calibration | closed"),
                 ("decoder", "decoder kind in control (empty in calibration)"),
                 ("task", "task"), ("success_rate", "successes / trials (NaN: none)"),
                 ("bits_per_s", "achieved bitrate, grid task (NaN: other tasks)"),
                 ("latency_p50_ms", "sample → cursor p50"),
                 ("latency_p99_ms", "sample → cursor p99")):
        table.add_column(k, d)
    for k, d in (("block", "row of processing/bci/blocks"), ("outcome", "how the trial ended"),
                 ("target_x", "target x"), ("target_y", "target y")):
        trials.add_column(k, d)
    for m, b in zip(meta["blocks"], blocks, strict=True):
        if not len(b["bins"]):
            continue
        ends = b["end_sample"]
        start = float(seconds(np.array([ends[0] - per_bin]))[0])
        lat = m.get("latency_ms") or {}

        def num(v: Any) -> float:
            return float(v) if v is not None else float("nan")

        table.add_row(start_time=start, stop_time=float(seconds(ends[-1:])[0]),
                      block_name=m["name"], mode=m["mode"], decoder=m.get("decoder") or "",
                      task=str(m.get("task", "")), success_rate=num(m.get("success_rate")),
                      bits_per_s=num(m.get("bits_per_s")), latency_p50_ms=num(lat.get("p50")),
                      latency_p99_ms=num(lat.get("p99")))
        t0 = start
        for bin_index, outcome in m.get("events", []):
            j = int(np.searchsorted(b["bins"], bin_index))
            if j >= len(ends):
                continue
            stop = float(seconds(ends[j:j + 1])[0])
            tx, ty = b["target"][j]
            trials.add_row(start_time=t0, stop_time=stop, block=len(table) - 1,
                           outcome=str(outcome), target_x=float(tx), target_y=float(ty))
            t0 = stop
    bci.add(table)
    if len(trials):
        bci.add(trials)


def write_session_nwb(npz: Path, nwb: Path, opts: NwbOptions | None = None) -> dict[str, Any]:
    """The session file into ``nwb``: appended to a recording if it exists, else a new file
    with ``opts``' session and subject metadata (module docstring). Returns what was
    written."""
    opts = opts or NwbOptions()
    meta, blocks = load_session(npz)
    if nwb.exists():
        with NWBHDF5IO(str(nwb), "a") as io:
            nwbfile = io.read()
            counts = add_bci(nwbfile, meta, blocks, recording_clock(nwbfile, meta["hub_session"]))
            io.write(nwbfile)
        return {"nwb": str(nwb), "appended": True, **counts}
    started = (dt.datetime.fromisoformat(meta["started_utc"]) if meta.get("started_utc")
               else dt.datetime.now(dt.UTC))
    first = [b["end_sample"][0] for b in blocks if len(b["end_sample"])]
    t0 = (first[0] if first else 0.0) - float(meta["bin_s"]) * float(meta["fs"])
    fs = float(meta["fs"])
    nwbfile = NWBFile(session_description=opts.session_description or
                      f"hubctl cursor session: {meta['features']} features",
                      identifier=opts.identifier or str(uuid.uuid4()),
                      session_start_time=started, file_create_date=dt.datetime.now(dt.UTC))
    nwbfile.subject = Subject(
        subject_id=opts.subject_id or "unknown", species=opts.species, sex=opts.sex,
        age=opts.age, description=None if opts.subject_id else
        "not given (hubctl cursor --subject-id, --species, --sex, --age)")
    counts = add_bci(nwbfile, meta, blocks, lambda s: np.asarray((s - t0) / fs, np.float64))
    nwb.parent.mkdir(parents=True, exist_ok=True)
    tmp = nwb.with_name(f".{nwb.stem}.{os.getpid()}.part.nwb")
    try:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwbfile)
        tmp.replace(nwb)
    finally:
        tmp.unlink(missing_ok=True)
    return {"nwb": str(nwb), "appended": False, **counts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("session", type=Path, help="the cursor session (.npz)")
    p.add_argument("nwb", type=Path, help="a recording to append to, or a new file")
    add_subject_arguments(p, "a new file: ")
    a = p.parse_args(argv)
    try:
        print(json.dumps(write_session_nwb(a.session, a.nwb, NwbOptions.from_args(a))))
    except (SessionNwbError, OSError) as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
