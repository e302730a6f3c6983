"""NWB conversion (hubctl decode): speed and peak memory on packet logs of two lengths.

The logs are what a 32-channel, 30 kHz hub sends over a saturated BLE link: spike batches
(~20 spikes/s per channel, sorted), 20 ms feature bins, 4-channel snippets (a quarter
of the spikes), 3 raw channels
through the real lossless codec, telemetry with the probe, time sync and shed reports once a
second, chunked by the real framing into 244-byte notifications. (Raw packets are a 10 s coded
cycle repeated with advancing sample indices: each cycle starts at a resync point, so the host
decodes them exactly as a live stream.) Each conversion runs in a child process: peak RSS is
its ru_maxrss. Speed is packet-log MB/s and session seconds per conversion second; bounded
memory shows as the same peak RSS for both lengths.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from host_tools.packetlog import Kind, Link, PacketLogWriter
from hub.daemon.rawcodec import RawCodec
from hub.wire import SCHEMA_VERSION, Chunker, pb

FS, C, BLOCK, BIN = 30000, 32, 300, 600
RAW_CH = (0, 1, 2)
SID = 0x5EED0001


def _env(stream: Any, seq: dict[int, int], sample: int) -> pb.Envelope:
    s = seq[stream] = seq.get(stream, -1) + 1
    return pb.Envelope(schema_version=SCHEMA_VERSION, stream=stream, seq=s, session_id=SID,
                       sample_index=sample, hub_time_ns=10**9 + sample * 10**9 // FS)


def _raw_cycle(rng: np.random.Generator) -> dict[int, list[bytes]]:
    """10 s of coded raw per channel, one RawBlock per 10 ms block (fields other than the
    sample index filled)."""
    rc = RawCodec(FS)
    n = 10 * FS
    t = np.arange(n)
    out: dict[int, list[bytes]] = {}
    for ch in RAW_CH:
        sig = rng.normal(0, 20, n) + 30 * np.sin(2 * np.pi * 7 * t / FS)
        for k in rng.integers(0, n - 40, 200):
            sig[k:k + 30] -= 150 * np.hanning(30)
        x = np.rint(sig).astype(np.int16)
        out[ch] = []
        for b in range(0, n, BLOCK):
            env = pb.Envelope()
            env.raw.first_sample, env.raw.n_samples = b, BLOCK
            env.raw.channels.append(ch)
            env.ParseFromString(rc.encode(env, x[b:b + BLOCK], ch))
            out[ch].append(env.raw.SerializeToString())
    return out


def make_log(path: Path, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cycle = _raw_cycle(rng)
    per_cycle = len(cycle[RAW_CH[0]])
    ch = Chunker()
    seq: dict[int, int] = {}
    t_host = 5 * 10**9
    with PacketLogWriter(path, {"tool": "bench_nwb"}, link=Link.BLE, flush_s=1e9) as w:
        w.event(Kind.CONNECT, {"name": "bench"})

        def send(env: pb.Envelope) -> None:
            ch.push(env.SerializeToString())
            while (c := ch.pop()) is not None:
                w.chunk(c, t_host)

        probe = pb.ProbeInfo(x_um=[16.0 * (i % 2) for i in range(C)],
                             y_um=[20.0 * (i // 2) for i in range(C)], uv_per_count=0.195,
                             location="M1", name="bench probe")
        for blk in range(int(seconds * FS) // BLOCK):
            first = blk * BLOCK
            end = first + BLOCK
            t_host = 5 * 10**9 + end * 10**9 // FS + int(rng.integers(2, 9)) * 10**6
            n = int(rng.poisson(C * 20 * BLOCK / FS))
            e = _env(pb.STREAM_SPIKES, seq, end)
            sb = e.spikes
            sb.first_sample, sb.end_sample = first, end
            off = np.sort(rng.integers(0, BLOCK, n))
            sb.offset.extend(off.tolist())
            chans = rng.integers(0, C, n)
            sb.channel.extend(chans.tolist())
            sb.unit.extend((chans // 2).tolist())
            sb.amplitude.extend(rng.integers(-400, -80, n).tolist())
            if blk == 0:
                for u in range(C // 2):
                    sb.unit_events.add(sample=first, kind=pb.UNIT_BIRTH, unit=u, other=-1)
            send(e)
            keep = rng.random(n) < 0.25          # the link carries about a quarter
            off, chans = off[keep], chans[keep]
            n = int(keep.sum())
            if n:
                e = _env(pb.STREAM_SNIPPETS, seq, end)
                sn = e.snippets
                sn.n_samples, sn.pre, sn.k = 48, 16, 4
                sn.sample.extend((first + off).tolist())
                sn.channel.extend(chans.tolist())
                sn.unit.extend((chans // 2).tolist())
                sn.neighbors.extend(np.stack([(chans + j) % C for j in range(4)], 1)
                                    .ravel().tolist())
                sn.waveforms = rng.integers(-300, 300, (n, 4, 48), dtype=np.int16).tobytes()
                send(e)
            if end % BIN == 0:
                e = _env(pb.STREAM_FEATURES, seq, end)
                fb = e.features
                fb.first_bin, fb.bin_samples, fb.n_channels, fb.n_bins = end // BIN - 1, BIN, C, 1
                fb.first_sample = end - BIN
                fb.counts.extend(rng.poisson(0.4, C).tolist())
                fb.rms_q4.extend(rng.integers(50, 90, C).tolist())
                fb.samples_seen.append(BIN)
                send(e)
            for rc in RAW_CH:
                e = _env(pb.STREAM_RAW, seq, end)
                e.raw.ParseFromString(cycle[rc][blk % per_cycle])
                e.raw.first_sample = first
                send(e)
            if end % FS == 0:
                e = _env(pb.STREAM_TELEMETRY, seq, end)
                e.time_sync.sample_index, e.time_sync.sampling_frequency = end, FS
                send(e)
                e = _env(pb.STREAM_TELEMETRY, seq, end)
                tel = e.telemetry
                tel.n_channels, tel.sampling_frequency, tel.cpu_load = C, FS, 0.3
                tel.hub_version = "bench"
                tel.config_json = json.dumps({"pipeline": {"threshold": 4.5}})
                tel.probe.CopyFrom(probe)
                send(e)
                e = _env(pb.STREAM_TELEMETRY, seq, end)
                e.shed.report_seq = end // FS
                e.shed.ranges.add(stream=pb.STREAM_RAW, reason=pb.SHED_BUDGET,
                                  first_sample=end - FS, end_sample=end,
                                  items=FS * (C - len(RAW_CH)),
                                  channels=list(range(len(RAW_CH), C)))
                send(e)
        while (last := ch.pop(flush=True)) is not None:
            w.chunk(last, t_host)


CHILD = """
import json, resource, sys, time
from pathlib import Path
from host_tools.nwb_writer import NwbOptions, convert
t = time.perf_counter()
r = convert(Path(sys.argv[1]), Path(sys.argv[2]), NwbOptions(species="Macaca mulatta"))
r["wall_s"] = time.perf_counter() - t
r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(r))
"""


def convert_in_child(log: Path, nwb: Path) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", CHILD, str(log), str(nwb)], capture_output=True,
                       text=True, check=True)
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def run(quick: bool) -> dict[str, Any]:
    lengths = (30.0, 120.0) if quick else (300.0, 1200.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_nwb_") as d:
        for secs in lengths:
            log, nwb = Path(d) / f"s{secs:.0f}.log", Path(d) / f"s{secs:.0f}.nwb"
            t = time.perf_counter()
            make_log(log, secs)
            gen = time.perf_counter() - t
            r = convert_in_child(log, nwb)
            rows.append({"session_s": secs, "log_mb": r["log_mb"], "nwb_mb": r["nwb_mb"],
                         "convert_s": round(r["wall_s"], 2),
                         "scan_s": r["scan_seconds"],
                         "log_mb_per_s": round(r["log_mb"] / r["wall_s"], 2),
                         "x_realtime": round(secs / r["wall_s"], 1),
                         "peak_rss_mb": round(r["peak_rss_mb"], 1),
                         "units": r["units"], "generate_s": round(gen, 1)})
            log.unlink()
            nwb.unlink()
    long = rows[-1]
    return {"rows": rows, "one_hour_projected_s": round(3600 / long["x_realtime"], 1),
            "peak_rss_ratio_long_vs_short": round(long["peak_rss_mb"] / rows[0]["peak_rss_mb"],
                                                  2),
            "self_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "note": "wall times on a shared 2-core machine: contended unless re-run quiet"}


def table(r: dict[str, Any]) -> str:
    lines = [f"{'session s':>9s} {'log MB':>7s} {'NWB MB':>7s} {'convert s':>9s} {'MB/s':>6s} "
             f"{'× real time':>11s} {'peak RSS MB':>11s}"]
    for x in r["rows"]:
        lines.append(f"{x['session_s']:9.0f} {x['log_mb']:7.1f} {x['nwb_mb']:7.1f} "
                     f"{x['convert_s']:9.1f} {x['log_mb_per_s']:6.2f} {x['x_realtime']:11.1f} "
                     f"{x['peak_rss_mb']:11.0f}")
    lines.append(f"1 h session projected: {r['one_hour_projected_s']:.0f} s to convert; peak RSS "
                 f"long/short {r['peak_rss_ratio_long_vs_short']:.2f}")
    return "\n".join(lines)
