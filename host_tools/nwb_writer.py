"""Packet log → NWB 2 (pynwb): ``hubctl decode PACKETS.log SESSION.nwb`` and the close of
``hubctl record --nwb``.

What goes where (times are seconds on the host clock, from each hub session's drift-corrected
time-sync fit, since ``session_start_time``):

- ``general/extracellular_ephys``: the device (the hub and its version), one electrode group per
  shank and the electrodes table (``location``, ``group``, ``rel_x``/``rel_y`` in µm when the hub
  knows the probe geometry, ``hub_channel``);
- ``acquisition/ElectricalSeriesRaw[_chN]``: delivered raw broadband, int16 ADC counts exactly as
  the hub's ADC produced them with ``conversion`` to volts; channels delivered over the same
  sample ranges share a series; samples never delivered are absent (timestamps jump), never filled;
- ``units``: sorted units (merges applied, as the hub reported them) and per-channel threshold
  crossings, with ``obs_intervals`` where the spike stream was up, and the hub's exact sample index
  per spike (``spike_samples``); ``processing/ecephys``: snippets as ``SpikeEventSeries`` (one per
  peak channel), feature bins as ``TimeSeries``, the sorter's unit events;
- ``processing/hub``: telemetry, commands and results, per-class accounting, hub logs, link
  throughput and packet latency, the time-sync points and fits; ``intervals/shed_and_gaps``: the
  shed/gap ledger; the hub's configuration per session.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import resource
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pynwb import NWBHDF5IO, NWBFile, ProcessingModule, TimeSeries
from pynwb.ecephys import ElectricalSeries, SpikeEventSeries
from pynwb.file import Subject

from host_tools import nwb_tables
from host_tools.nwb_scan import Scan, SessionInfo
from host_tools.nwb_series import (
    Clock,
    compressed,
    raw_groups,
    raw_reader,
    raw_series_name,
    times_reader,
)

log = logging.getLogger(__name__)


@dataclass
class NwbOptions:
    session_description: str | None = None
    subject_id: str | None = None
    species: str | None = None
    sex: str = "U"
    age: str = "P0D/"
    identifier: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NwbOptions:
        return cls(getattr(args, "session_description", None),
                   getattr(args, "subject_id", None), getattr(args, "species", None),
                   getattr(args, "sex", None) or "U", getattr(args, "age", None) or "P0D/")


class NwbError(ValueError):
    """The packet log cannot make an NWB file (no hub data in it, say)."""


def convert(log_path: Path, nwb_path: Path, opts: NwbOptions | None = None) -> dict[str, Any]:
    """Writes ``nwb_path`` from the packet log; returns a report (sizes, counts, MB/s). The
    file appears whole or not at all (written beside it, then renamed)."""
    opts = opts or NwbOptions()
    t0 = time.monotonic()
    nwb_path = Path(nwb_path)
    nwb_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".nwb-spill-", dir=nwb_path.parent))
    part = nwb_path.with_name(f".{nwb_path.stem}.part.nwb")
    try:
        scan = Scan(log_path, tmp).run()
        if not scan.sessions:
            raise NwbError(f"{log_path}: no hub packets in the log "
                           f"({scan.read_stats.records} records)")
        t_scan = time.monotonic() - t0
        rss_scan = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        nwbfile, counts = build(scan, opts, log_path)
        with NWBHDF5IO(str(part), "w") as io:
            io.write(nwbfile)
        os.replace(part, nwb_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        part.unlink(missing_ok=True)
    secs = time.monotonic() - t0
    in_mb = log_path.stat().st_size / 1e6
    return {"nwb": str(nwb_path), "packet_log": str(log_path), "log_mb": round(in_mb, 3),
            "nwb_mb": round(nwb_path.stat().st_size / 1e6, 3), "seconds": round(secs, 3),
            "scan_seconds": round(t_scan, 3), "mb_per_s": round(in_mb / secs, 3) if secs else 0,
            "peak_rss_mb_after_scan": round(rss_scan, 1),
            "log": scan.read_stats.to_dict(), **counts}


def session_start(scan: Scan, clock: Clock) -> dt.datetime:
    m = scan.meta
    wall_ns = int(m.get("created_unix_ns", time.time_ns())) + (
        clock.t0_ns - int(m.get("created_monotonic_ns", clock.t0_ns)))
    return dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.UTC)


def build(scan: Scan, opts: NwbOptions, log_path: Path) -> tuple[NWBFile, dict[str, Any]]:
    """The NWBFile (datasets still lazy: iterators over the scan's spills)."""
    clock = Clock(scan)
    sessions = scan.session_list()
    main = max(sessions, key=lambda s: (s.probe is not None, s.n_channels))
    versions = sorted({s.hub_version for s in sessions if s.hub_version})
    desc = opts.session_description or (
        f"implant-hub recording over {scan.link.upper()}: {main.n_channels} channels at "
        f"{main.fs:.0f} Hz, {len(sessions)} hub session(s)")
    nwbfile = NWBFile(
        session_description=desc, identifier=opts.identifier or str(uuid.uuid4()),
        session_start_time=session_start(scan, clock),
        file_create_date=dt.datetime.now(dt.UTC),
        source_script=f"hubctl decode {log_path.name} (host_tools.nwb_writer)",
        source_script_file_name="host_tools/nwb_writer.py",
        was_generated_by=[["implant-hub host tools", _host_version()],
                          *[["hub", v] for v in versions]],
        data_collection=("Hub sample clock mapped to the host clock by a drift-corrected fit "
                         "of time-sync packets (processing/hub/time_sync_fits). Samples, spikes "
                         "and bins the link did not deliver are absent, never filled; "
                         "intervals/shed_and_gaps lists every such range."),
    )
    if not opts.species:
        log.warning("no --species: NWB best practice (nwbinspector) wants the subject's species")
    nwbfile.subject = Subject(
        subject_id=opts.subject_id or "unknown", species=opts.species, sex=opts.sex,
        age=opts.age, description=None if opts.subject_id else
        "not given (hubctl record/decode --subject-id, --species, --sex, --age)")
    electrodes = add_electrodes(nwbfile, main, versions)
    counts: dict[str, Any] = {"sessions": [f"{s.session_id:08x}" for s in sessions]}
    counts["raw_series"] = add_raw(nwbfile, scan, clock, main)
    ecephys = nwbfile.create_processing_module(
        "ecephys", "Spike-band results computed on the hub: snippets, feature bins, "
                   "the online sorter's unit events")
    counts["snippets"] = add_snippets(nwbfile, ecephys, scan, clock, main)
    counts["feature_bins"] = add_features(ecephys, scan, clock, main)
    hub = nwbfile.create_processing_module(
        "hub", "The hub and its link: telemetry, commands and results, accounting, logs, "
               "throughput, latency, time sync")
    counts.update(nwb_tables.add_all(nwbfile, ecephys, hub, scan, clock, electrodes))
    return nwbfile, counts


def _host_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("implant-hub")
    except PackageNotFoundError:
        return "unknown"


def time_kwargs(t: Any) -> dict[str, Any]:
    """``starting_time`` + ``rate`` when the times are regular (to the ns, as nwbinspector
    judges), else ``timestamps``."""
    d = np.diff(t)
    if t.size > 2 and np.unique(np.round(d, 9)).size == 1 and d[0] > 0:
        return {"starting_time": float(t[0]), "rate": float(1.0 / d[0])}
    return {"timestamps": t}


def gain_volts(s: SessionInfo) -> float:
    """Volts per ADC count (1.0 when the hub does not know its gain)."""
    g = s.probe.uv_per_count if s.probe is not None else 0.0
    return g * 1e-6 if g > 0 else 1.0


def add_electrodes(nwbfile: NWBFile, s: SessionInfo, versions: list[str]) -> int:
    """Device, electrode groups and the electrodes table; returns the channel count."""
    n = s.n_channels or (len(s.probe.x_um) if s.probe is not None else 0)
    p = s.probe
    name = (p.name if p is not None and p.name else "implant")
    ver = ", ".join(versions) or "version unknown"
    device = nwbfile.create_device(name="implant-hub",
                                   description=f"wireless implant hub ({ver}) with {name}")
    location = (p.location if p is not None and p.location else "unknown")
    groups_of = list(p.group) if p is not None and len(p.group) == n else [0] * n
    groups = {g: nwbfile.create_electrode_group(
        name=f"shank{g}", description=f"{name}, shank {g}", location=location, device=device)
        for g in sorted(set(groups_of))}
    has_xy = p is not None and len(p.x_um) == n
    nwbfile.add_electrode_column("hub_channel", "channel index in the hub's stream")
    for c in range(n):
        kw: dict[str, Any] = {}
        if has_xy and p is not None:
            kw = {"rel_x": float(p.x_um[c]), "rel_y": float(p.y_um[c])}
        nwbfile.add_electrode(group=groups[groups_of[c]], location=location, hub_channel=c,
                              **kw)
    if not has_xy:
        log.warning("the hub did not report probe geometry: electrodes without rel_x/rel_y")
    return n


def add_raw(nwbfile: NWBFile, scan: Scan, clock: Clock, s: SessionInfo) -> list[dict[str, Any]]:
    out = []
    conv = gain_volts(s)
    for i, g in enumerate(raw_groups(scan)):
        name = raw_series_name(i, g.channels)
        region = nwbfile.create_electrode_table_region(g.channels, f"channels of {name}")
        data = compressed(raw_reader(scan, g), (g.rows, len(g.channels)), np.int16)
        kw: dict[str, Any]
        first = g.blocks[0]
        if g.contiguous:
            t_first = float(clock.seconds(first["session"], first["first"]))
            last = int(first["first"]) + g.rows - 1
            t_last = float(clock.seconds(first["session"], last))
            rate = (g.rows - 1) / (t_last - t_first) if g.rows > 1 and t_last > t_first \
                else (s.fs or 30000.0)
            kw = {"starting_time": t_first, "rate": rate}
        else:
            kw = {"timestamps": compressed(times_reader(clock, g.blocks), (g.rows,),
                                           np.float64, shuffle=True)}
        desc = ("raw broadband as the hub's ADC delivered it (int16 counts; bit-exact through "
                "the lossless codec); ranges the link did not deliver are absent — see "
                "processing/hub/raw_blocks for each block's hub sample index")
        if conv == 1.0:
            desc += "; the hub does not know its gain: values are ADC counts (conversion 1)"
        nwbfile.add_acquisition(ElectricalSeries(
            name=name, data=data, electrodes=region, conversion=conv, description=desc,
            comments=f"hub channels {g.channels}", **kw))
        out.append({"name": name, "channels": g.channels, "samples": g.rows,
                    "blocks": int(g.blocks.size), "contiguous": g.contiguous})
    return out


def snippet_means(scan: Scan) -> dict[tuple[int, int, int], tuple[Any, int]]:
    """Mean peak-channel waveform (counts) per (session, hub unit, channel) over the snippets,
    for the units table's ``waveform_mean`` (read in bounded slices)."""
    acc: dict[tuple[int, int, int], tuple[Any, int]] = {}
    for (_k, _ns), (wf_sp, _nb, meta_sp) in sorted(scan.snippets.items()):
        meta = meta_sp.array()
        for a in range(0, meta.size, 16384):
            m = np.asarray(meta[a:a + 16384])
            w = np.asarray(wf_sp.read(a, a + 16384)[:, 0, :], np.float64)
            keys = np.stack([m["session"].astype(np.int64), m["unit"].astype(np.int64),
                             m["channel"].astype(np.int64)], axis=1)
            uk, inv = np.unique(keys, axis=0, return_inverse=True)
            for i, key in enumerate(uk):
                sel = w[inv.ravel() == i]
                k3 = (int(key[0]), int(key[1]), int(key[2]))
                s0, n0 = acc.get(k3, (0.0, 0))
                acc[k3] = (s0 + sel.sum(axis=0), n0 + sel.shape[0])
    return acc


def add_snippets(nwbfile: NWBFile, ecephys: ProcessingModule, scan: Scan, clock: Clock,
                 s: SessionInfo) -> int:
    """One SpikeEventSeries per (peak channel, neighbour set): events × channels × samples."""
    total = 0
    conv = gain_volts(s)
    for (_k, ns), (wf_sp, nb_sp, meta_sp) in sorted(scan.snippets.items()):
        nb, meta = np.asarray(nb_sp.array()), np.asarray(meta_sp.array())
        keys = np.concatenate([meta["channel"][:, None].astype(np.int64), nb.astype(np.int64)],
                              axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        for gi, key in enumerate(uniq):
            idx = np.flatnonzero(inv.ravel() == gi)
            t_all = clock.seconds(meta["session"][idx], meta["sample"][idx])
            idx = idx[np.argsort(t_all, kind="stable")]      # timestamps must ascend
            valid = np.flatnonzero(key[1:] >= 0)
            chans = [int(c) for c in key[1:][valid]] or [int(key[0])]
            valid = valid if valid.size else np.array([0])
            ch = int(key[0])
            name = f"Snippets_ch{ch}" if len(uniq) == len(set(uniq[:, 0])) else \
                f"Snippets_ch{ch}_{gi}"

            def read(a: int, b: int, idx: Any = idx, valid: Any = valid, wf: Any = wf_sp) -> Any:
                return wf.take(idx[a:b])[:, valid, :]

            times = clock.seconds(meta["session"][idx], meta["sample"][idx])
            region = nwbfile.create_electrode_table_region(chans, f"channels of {name}")
            ecephys.add(SpikeEventSeries(
                name=name, data=compressed(read, (idx.size, valid.size, ns), np.int16),
                timestamps=times, electrodes=region, conversion=conv,
                description=(f"spike-band filtered waveforms around events peaking on hub "
                             f"channel {ch} ({scan.snippet_pre} samples before the peak, "
                             f"{ns} in all), int16 counts")))
            total += idx.size
    return total


def add_features(ecephys: ProcessingModule, scan: Scan, clock: Clock, s: SessionInfo) -> int:
    """Feature bins as TimeSeries (bin start times): crossings, spike-band RMS, samples."""
    total = 0
    uv = s.probe.uv_per_count if s.probe is not None else 0.0
    for c, (cnt, rms, bins) in sorted(scan.features.items()):
        b = bins.array()
        if not b.size:
            continue
        sfx = "" if len(scan.features) == 1 else f"_{c}ch"
        t = clock.seconds(b["session"], b["first_sample"])
        tk: dict[str, Any] = time_kwargs(t)
        for name, sp, unit, conv, desc in (
                ("ThresholdCrossingCounts", cnt, "crossings", 1.0,
                 "threshold crossings per channel and bin"),
                ("SpikeBandRMS", rms, "volts" if uv > 0 else "ADC counts",
                 (uv * 1e-6 if uv > 0 else 1.0) / 16,
                 "root-mean-square of the spike-band signal per channel and bin")):
            def read(a: int, z: int, sp: Any = sp) -> Any:
                return sp.read(a, z)
            series = TimeSeries(name=name + sfx, data=compressed(
                read, (sp.rows, *sp.row_shape), np.uint32), unit=unit,
                conversion=conv, description=desc + " (bin start times)", **tk)
            ecephys.add(series)
            if "timestamps" in tk:         # the others share the first one's timestamps
                tk = {"timestamps": series}
        ecephys.add(TimeSeries(name="FeatureBinSamples" + sfx, data=b["samples_seen"].copy(),
                               unit="samples", **tk,
                               description="samples that contributed to each bin (fewer "
                                           "than bin_samples next to a gap)"))
        total += int(b.size)
    return total
