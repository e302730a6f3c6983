"""Acceptance checks of a recorded NWB file against its packet log and the recording the
simulated implant replayed (shared by tests/test_nwb.py and the slow 60 s session)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from host_tools.packetlog import Kind, Link, PacketLogReader
from host_tools.receiver import Receiver
from host_tools.timesync import TimeSyncFit
from hub.sources import open_recording
from hub.wire import pb

BAD = ("CRITICAL", "BEST_PRACTICE_VIOLATION")
DOWN = (pb.SHED_IMPLANT_GAP, pb.SHED_HUB_RESTART, pb.SHED_STOPPED)


def inspector_problems(nwb: Path) -> list[str]:
    from nwbinspector import inspect_nwbfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [f"{m.importance.name} {m.check_function_name} {m.object_name}: {m.message}"
                for m in inspect_nwbfile(nwbfile_path=str(nwb)) if m.importance.name in BAD]


def decode_log(log: Path) -> dict[str, Any]:
    """An independent pass over the log with the plain receiver: spikes, time sync, gaps."""
    spikes: list[tuple[int, int, int]] = []
    events: list[tuple[int, int, int, int, int, int]] = []  # session, kind, unit, other, smp, ch
    sync: dict[int, list[tuple[pb.TimeSync, int]]] = {}

    def on(env: pb.Envelope, t: int) -> None:
        k = env.WhichOneof("payload")
        if k == "spikes":
            sb = env.spikes
            spikes.extend((env.session_id, sb.first_sample + o, c)
                          for o, c in zip(sb.offset, sb.channel, strict=True))
            events.extend((env.session_id, e.kind, e.unit, e.other, e.sample, e.channel)
                          for e in sb.unit_events)
        elif k == "time_sync":
            ts = pb.TimeSync()
            ts.CopyFrom(env.time_sync)
            sync.setdefault(env.session_id, []).append((ts, t))

    rx = Receiver(on)
    reader = PacketLogReader(log)
    for rec in reader:
        if rec.kind == Kind.CHUNK:
            rx.feed_chunk(rec.payload, rec.t_ns)
        elif rec.kind == Kind.CONNECT and rec.link == Link.TCP:
            rx.reset_link()
    gaps = {sid: [(r.first_sample, r.end_sample) for r in s.shed_ranges
                  if r.stream == pb.STREAM_UNSPECIFIED and r.reason in DOWN]
            for sid, s in rx.sessions.items()}
    return {"spikes": spikes, "sync": sync, "gaps": gaps, "rx": rx, "stats": reader.stats,
            "unit_events": events}


def late_label_rows(ref: dict[str, Any]) -> dict[tuple[int, int, int], tuple[int, int]]:
    """(session index, sample, channel) → (session index, hub unit) the late labels in the log
    name, through the merges the hub reported."""
    order = ref["rx"].order
    into: dict[tuple[int, int], int] = {}
    for sid, kind, unit, other, _, _ in ref["unit_events"]:
        if kind == pb.UNIT_MERGE:
            into[(sid, other)] = unit
    out = {}
    for sid, kind, unit, _, sample, channel in ref["unit_events"]:
        if kind == pb.UNIT_LABEL:
            u, seen = unit, set()
            while (sid, u) in into and u not in seen:
                seen.add(u)
                u = into[(sid, u)]
            out[(order.index(sid), sample, channel)] = (order.index(sid), u)
    return out


def check_session(nwb_path: Path, log: Path, recording: str) -> dict[str, Any]:
    """Every acceptance property; returns figures for the test's report."""
    import spikeinterface.extractors as se
    from pynwb import NWBHDF5IO

    problems = inspector_problems(nwb_path)
    assert not problems, "\n".join(problems)
    ref = decode_log(log)
    order = ref["rx"].order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        io = NWBHDF5IO(str(nwb_path), "r")
        f = io.read()
        u = f.units
        fits = f.processing["hub"]["time_sync_fits"].to_dataframe()
        # --- every spike as the hub sent it (minus spikes inside reported gaps)
        got = []
        labels = late_label_rows(ref)
        relabelled = 0
        for i in range(len(u)):
            smp = np.asarray(u["spike_samples"][i])
            ch = np.asarray(u["spike_channels"][i])
            t = np.asarray(u["spike_times"][i])
            ses = np.asarray(u["spike_sessions"][i])
            got += list(zip(ses.tolist(), smp.tolist(), ch.tolist(), t.tolist(), strict=True))
            row = (int(u["hub_session"][i]), int(u["hub_unit"][i]))
            for key in zip(ses.tolist(), smp.tolist(), ch.tolist(), strict=True):
                if key in labels:      # a late label's spike sits in its unit's row
                    assert labels[key] == row, (key, labels[key], row)
                    relabelled += 1
        sent = [(order.index(sid), s, c) for sid, s, c in ref["spikes"]
                if not any(a <= s < b for a, b in ref["gaps"].get(sid, []))]
        assert sorted(sent) == sorted((x, s, c) for x, s, c, _ in got)
        # spike times: the session's time-sync fit of the spike's sample, up to a constant
        sid0 = order[0]
        fit = TimeSyncFit(window_s=1e9, max_points=10**6)
        for ts, t in ref["sync"].get(sid0, []):
            if not ts.host_time_ns:
                fit.add_packet(ts, t)
        one = [(s, t) for sess, s, _, t in got if sess == 0]
        if one and len(order) == 1 and fits["source"][0] == "time_sync" and len(fits) == 1:
            smp = np.array([s for s, _ in one])
            off = np.array([t for _, t in one]) - fit.to_host_ns(smp) / 1e9
            assert np.ptp(off) < 2e-6, np.ptp(off)
        # --- raw: bit-exact against what the implant replayed, block by block
        rec = open_recording(Path(recording))
        rb = f.processing["hub"]["raw_blocks"]
        blocks = rb.to_dataframe()
        names = dict(x.split(" = ") for x in rb["series"].description.split(": ", 1)[1]
                     .split(", "))
        blocks["series"] = [names[str(i)] for i in blocks["series"]]
        raw_checked = 0
        for name, es in f.acquisition.items():
            chans = [int(c) for c in es.electrodes.data[:]]
            data = es.data
            for b in blocks[blocks["series"] == name].itertuples():
                a, n = int(b.first_sample), int(b.n_samples)
                want = rec.read(a, a + n)[:, chans]
                assert np.array_equal(data[b.first_row:b.first_row + n], want), (name, a)
                raw_checked += n * len(chans)
        # --- every gap in the ledger is a gap in the file
        led = f.intervals["shed_and_gaps"].to_dataframe()
        for r in led.itertuples():
            a, b = int(r.first_sample), int(r.end_sample)
            blk = blocks[(blocks["hub_session"] == r.hub_session)
                         & (blocks["first_sample"] < b)
                         & (blocks["first_sample"] + blocks["n_samples"] > a)]
            if r.stream == "all" and r.reason in ("SHED_IMPLANT_GAP", "SHED_HUB_RESTART",
                                                   "SHED_STOPPED"):
                assert blk.empty, f"raw inside gap {r}"
                assert not any(a <= s < b for sess, s, _, _ in got
                               if sess == r.hub_session), f"spike inside gap {r}"
            elif r.stream == "raw":
                shed = {int(c) for c in r.channels.split(",") if c} or set(range(rec.num_channels))
                for series in set(blk["series"]):
                    es = f.acquisition[series]
                    have = {int(c) for c in es.electrodes.data[:]}
                    assert not (have & shed), f"raw of shed channels {have & shed} in {r}"
        io.close()
    main = "acquisition/ElectricalSeriesRaw"
    r = se.read_nwb_recording(str(nwb_path), electrical_series_path=main)
    s = se.read_nwb_sorting(str(nwb_path), electrical_series_path=main)
    assert r.get_num_samples() > 0 and s.get_num_units() == len(u)
    return {"spikes": len(got), "late_labels_in_rows": relabelled,
            "raw_channel_samples_checked": raw_checked,
            "ledger_rows": len(led), "gaps": sum(len(v) for v in ref["gaps"].values())}
