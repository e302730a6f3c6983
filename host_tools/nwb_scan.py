"""One pass over a packet log: the same receiver as a live recording (reassembly, decoding,
continuity, accounting), with everything the NWB file needs gathered on the way — small things
in memory, big things spilled to disk (:mod:`host_tools.nwb_spill`).

Raw broadband is kept per channel (each channel's delivered blocks, in order): the scheduler
sends as many raw channels as the link allows, so the set changes from block to block; the
writer later groups channels whose delivered samples are identical into one ElectricalSeries.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from host_tools.nwb_spill import Spill
from host_tools.packetlog import Kind, PacketLogReader, ReadStats
from host_tools.receiver import RawDecoder, Receiver
from host_tools.timesync import TimeSyncFit
from hub.wire import pb

log = logging.getLogger(__name__)

SPIKE_DTYPE = np.dtype([("session", "<u2"), ("sample", "<i8"), ("channel", "<i4"),
                        ("unit", "<i4"), ("amplitude", "<i4")])
SNIPPET_DTYPE = np.dtype([("session", "<u2"), ("sample", "<i8"), ("channel", "<i4"),
                          ("unit", "<i4")])
BIN_DTYPE = np.dtype([("session", "<u2"), ("first_sample", "<i8"), ("bin_samples", "<i4"),
                      ("samples_seen", "<u4")])
BLOCK_DTYPE = np.dtype([("session", "<u2"), ("first", "<i8"), ("n", "<i4")])
PACKET_DTYPE = np.dtype([("stream", "<u1"), ("session", "<u2"), ("sample_index", "<i8"),
                         ("hub_time_ns", "<i8"), ("host_ns", "<i8"), ("items", "<u4")])
#: A fitted drift beyond this is no crystal's: too few time-sync points against too much delay.
MAX_DRIFT_PPM = 1000.0
LINK_BIN_NS = 100_000_000   # link throughput is gathered in bins of 100 ms of host time
PENDING_BLOCKS = 8          # raw blocks assembled at once (a block's channels come together)


def _fields(msg: Message, prefix: str = "") -> list[tuple[str, str]]:
    """A message's set fields as dotted paths (``configure.pipeline.threshold=4.5``)."""
    out: list[tuple[str, str]] = []
    for f, v in msg.ListFields():
        repeated = isinstance(v, list) or hasattr(v, "extend")
        if f.message_type is not None and not repeated:
            out += _fields(v, f"{prefix}{f.name}.")
        elif isinstance(v, bytes):
            out.append((prefix + f.name, v.hex()))
        elif repeated:
            out.append((prefix + f.name, f"[{len(v)} values]"))
        else:
            out.append((prefix + f.name, str(v)))
    return out


class _ScanReceiver(Receiver):
    """The live receiver without its per-spike latency lists (the scan keeps a packet table
    instead)."""

    def _latency(self, env: pb.Envelope, kind: str, s: Any, t_ns: int) -> None:
        return None


class _CapturingRawDecoder(RawDecoder):
    """The receiver's raw decoder, keeping its latest output for the scan."""

    last: npt.NDArray[np.int16] | None = None

    def decode(self, session: int, rb: pb.RawBlock) -> npt.NDArray[np.int16] | None:
        self.last = super().decode(session, rb)
        return self.last


@dataclass
class RawChannel:
    """One channel's delivered raw blocks: samples and (session, first, n) per block."""

    data: Spill
    blocks: Spill
    end: dict[int, int] = field(default_factory=dict)     # session → end of the last block


@dataclass
class SessionInfo:
    """What the scan learned about one hub session (process start)."""

    session_id: int
    index: int
    fs: float = 0.0
    n_channels: int = 0
    probe: pb.ProbeInfo | None = None
    hub_version: str = ""
    configs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (host ns, config)
    sync: list[tuple[pb.TimeSync, int]] = field(default_factory=list)  # (packet, host ns)
    telemetry_points: list[tuple[int, int]] = field(default_factory=list)
    first_sample: int | None = None
    last_sample: int = 0
    first_host_ns: int = 0
    last_host_ns: int = 0
    unit_events: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    fit: Any = None                                            # TimeSyncFit or NominalClock
    fit_source: str = ""


class NominalClock:
    """Fallback when a session has too few time-sync packets: the nominal rate, anchored on the
    least delayed data packet."""

    def __init__(self, fs: float, anchor_ns: float) -> None:
        self.fs, self.anchor_ns = fs, anchor_ns

    drift_ppm = 0.0

    def summary(self) -> dict[str, Any]:
        return {"points": 0, "fitted": False, "ns_per_sample": 1e9 / self.fs, "drift_ppm": 0.0}

    def to_host_ns(self, sample_index: Any) -> Any:
        return np.rint(self.anchor_ns + np.asarray(sample_index, np.float64) * 1e9 / self.fs
                       ).astype(np.int64)


class PiecewiseFit:
    """One time-sync fit per implant clock epoch, each from the hub sample where it starts."""

    def __init__(self, pieces: list[tuple[int, TimeSyncFit]]) -> None:
        self.pieces = pieces
        self.starts = np.array([x for x, _ in pieces], np.int64)

    def to_host_ns(self, sample_index: Any) -> Any:
        x = np.asarray(sample_index, np.int64)
        if len(self.pieces) == 1:
            return self.pieces[0][1].to_host_ns(x)
        i = np.clip(np.searchsorted(self.starts, x, side="right") - 1, 0, len(self.pieces) - 1)
        out = np.empty(x.shape, np.int64)
        for k in np.unique(i):
            m = i == k
            out[m] = self.pieces[int(k)][1].to_host_ns(x[m])
        return out if out.ndim else out.item()

    @property
    def drift_ppm(self) -> float | None:
        return self.pieces[-1][1].drift_ppm

    def summary(self) -> dict[str, Any]:
        return self.pieces[-1][1].summary()


class Scan:
    """Everything gathered from one packet log (see module docstring)."""

    def __init__(self, log_path: Path, spill_dir: Path) -> None:
        self.log_path = Path(log_path)
        self.dir = spill_dir
        spill_dir.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {}
        self.read_stats = ReadStats()
        self.link = "unknown"
        self.rx = _ScanReceiver(self._on_envelope)
        self.raw_dec = _CapturingRawDecoder()
        self.rx.raw = self.raw_dec
        self.sessions: dict[int, SessionInfo] = {}
        #: spikes per label as the hub sent it: (session, unit) sorted, (-1, channel) crossings
        self.spike_keys: dict[tuple[int, int], Spill] = {}
        self.spike_dtype = SPIKE_DTYPE
        self.packets = Spill(spill_dir / "packets.bin", PACKET_DTYPE)
        self.snippets: dict[tuple[int, int], tuple[Spill, Spill, Spill]] = {}
        self.features: dict[int, tuple[Spill, Spill, Spill]] = {}
        self.raw: dict[int, RawChannel] = {}
        self.raw_out_of_order = 0
        self.spikes_in_gaps = 0                # dropped by the writer (held samples)
        self.late_labels: dict[str, int] = {}  # UNIT_LABELs applied / naming no spike
        self.raw_duplicates = 0
        self._pending: OrderedDict[tuple[int, int, int], dict[int, npt.NDArray[np.int16]]] = (
            OrderedDict())
        self.telemetry: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.connections: list[dict[str, Any]] = []
        self.link_seconds: dict[int, list[int]] = {}   # host 100 ms bin → [bytes, chunks]
        self.snippet_pre = 0
        self.first_ns: int | None = None
        self.last_ns = 0

    # ------------------------------------------------------------ the pass
    def run(self) -> Scan:
        reader = PacketLogReader(self.log_path)
        self.meta = reader.meta
        for rec in reader:
            self.first_ns = rec.t_ns if self.first_ns is None else self.first_ns
            self.last_ns = max(self.last_ns, rec.t_ns)
            if rec.kind == Kind.CHUNK:
                sec = self.link_seconds.setdefault(rec.t_ns // LINK_BIN_NS, [0, 0])
                sec[0] += len(rec.payload)
                sec[1] += 1
                self.rx.feed_chunk(rec.payload, rec.t_ns)
            elif rec.kind == Kind.CONNECT:
                self.link = rec.link.name.lower()
                self.connections.append({"t_ns": rec.t_ns, "event": "connect", **rec.json()})
                # as the live session does (host_tools.session): the next chunk's sequence
                # number decides whether the stream continued across the reconnect
                self.rx.link_changed()
            elif rec.kind == Kind.DISCONNECT:
                self.connections.append({"t_ns": rec.t_ns, "event": "disconnect", **rec.json()})
            elif rec.kind == Kind.COMMAND:
                self._on_command(rec.payload, rec.t_ns)
        self.read_stats = reader.stats
        self._flush_raw(all_blocks=True)
        for s in self.sessions.values():
            self._fit(s)
        return self

    def _session(self, sid: int) -> SessionInfo:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = SessionInfo(sid, len(self.sessions))
        return s

    def _on_command(self, payload: bytes, t_ns: int) -> None:
        try:
            cmd = pb.Command.FromString(payload)
        except Exception:
            self.commands.append({"t_ns": t_ns, "request_id": -1, "command": "undecodable",
                                  "detail": payload[:64].hex()})
            return
        self.commands.append({"t_ns": t_ns, "request_id": cmd.request_id,
                              "command": cmd.WhichOneof("command") or "",
                              "detail": "; ".join(f"{k}={v}" for k, v in _fields(cmd))})

    def _on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        s = self._session(env.session_id)
        s.first_host_ns = s.first_host_ns or t_ns
        s.last_host_ns = t_ns
        kind = env.WhichOneof("payload")
        if kind in ("spikes", "features", "snippets", "raw"):
            self.packets.append_row((env.stream, s.index, env.sample_index, env.hub_time_ns,
                                     t_ns, 0))
            s.last_sample = max(s.last_sample, int(env.sample_index))
        if kind == "spikes":
            self._on_spikes(s, env.spikes)
        elif kind == "features":
            self._on_features(s, env.features)
        elif kind == "snippets":
            self._on_snippets(s, env.snippets)
        elif kind == "raw":
            self._on_raw(s, env.raw)
        elif kind == "time_sync":
            s.fs = env.time_sync.sampling_frequency or s.fs
            ts = pb.TimeSync()
            ts.CopyFrom(env.time_sync)
            s.sync.append((ts, t_ns))
        elif kind == "telemetry":
            self._on_telemetry(s, env, t_ns)
        elif kind == "shed":
            self.rx.compact_shed_ranges()
        elif kind == "result":
            r = env.result
            self.results.append({"t_ns": t_ns, "request_id": r.request_id, "command": r.command,
                                 "code": pb.ResultCode.Name(r.code), "message": r.message,
                                 "session": s.index})
        elif kind == "log":
            self.logs.append({"t_ns": t_ns, "level": env.log.level, "logger": env.log.logger,
                              "message": env.log.message, "session": s.index})

    def _on_telemetry(self, s: SessionInfo, env: pb.Envelope, t_ns: int) -> None:
        t = env.telemetry
        s.fs = t.sampling_frequency or s.fs
        s.n_channels = t.n_channels or s.n_channels
        s.hub_version = t.hub_version or s.hub_version
        if t.HasField("probe"):
            s.probe = t.probe
        if t.config_json:
            cfg = json.loads(t.config_json)
            if not s.configs or s.configs[-1][1] != cfg:
                s.configs.append((t_ns, cfg))
        s.telemetry_points.append((int(env.sample_index), t_ns))
        row: dict[str, Any] = {
            "t_ns": t_ns, "session": s.index, "sample_index": int(env.sample_index),
            "cpu_load": t.cpu_load, "budget_bps": t.budget_bps, "uplink_bps": t.uplink_bps,
            "uplink_chunks": t.uplink_chunks, "uplink_connects": t.uplink_connects,
            "link_frames": t.link_frames, "link_corrupt": t.link_corrupt,
            "link_missing_frames": t.link_missing_frames,
            "link_garbage_bytes": t.link_garbage_bytes,
            "raw_channels_sent": t.raw_channels_sent, "blocks": t.blocks,
            "overruns": t.overruns, "stage_restarts": t.stage_restarts,
            "temperature_c": t.temperature_c, "battery_pct": t.battery_pct,
            "running": t.running}
        for c in t.classes:
            name = pb.Stream.Name(c.stream).removeprefix("STREAM_").lower()
            for f in ("produced", "sent", "shed", "queued", "queued_bytes"):
                row[f"{name}_{f}"] = getattr(c, f)
        self.telemetry.append(row)

    def _on_spikes(self, s: SessionInfo, sb: pb.SpikeBatch) -> None:
        n = len(sb.offset)
        s.first_sample = sb.first_sample if s.first_sample is None else min(
            s.first_sample, sb.first_sample)
        if n:
            a = np.empty(n, SPIKE_DTYPE)
            a["session"] = s.index
            a["sample"] = sb.first_sample + np.asarray(sb.offset, np.int64)
            a["channel"] = np.asarray(sb.channel, np.int32)
            a["unit"] = np.asarray(sb.unit, np.int32) if len(sb.unit) == n else -1
            a["amplitude"] = np.asarray(sb.amplitude, np.int32) if len(sb.amplitude) == n else 0
            srt = a["unit"] >= 0
            key = np.where(srt, a["unit"], a["channel"]).astype(np.int64)
            for k in np.unique(key[srt]):
                self._spill_spikes((s.index, int(k)), a[srt & (key == k)])
            for k in np.unique(key[~srt]):
                self._spill_spikes((-1, int(k)), a[~srt & (key == k)])
        for e in sb.unit_events:
            s.unit_events.append((int(e.sample), int(e.kind), int(e.unit), int(e.other),
                                  int(e.channel), s.index))

    def _spill_spikes(self, key: tuple[int, int], rows: npt.NDArray[Any]) -> None:
        sp = self.spike_keys.get(key)
        if sp is None:
            name = f"spk_s{key[0]}_u{key[1]}" if key[0] >= 0 else f"spk_ch{key[1]}"
            sp = self.spike_keys[key] = Spill(self.dir / f"{name}.bin", SPIKE_DTYPE,
                                              buffer_bytes=1 << 16)
        sp.append(rows)

    def _on_features(self, s: SessionInfo, fb: pb.FeatureBins) -> None:
        n, c = int(fb.n_bins), int(fb.n_channels)
        if n == 0 or c == 0 or len(fb.counts) != n * c or len(fb.rms_q4) != n * c:
            return
        s.first_sample = fb.first_sample if s.first_sample is None else min(
            s.first_sample, fb.first_sample)
        sp = self.features.get(c)
        if sp is None:
            sp = self.features[c] = (Spill(self.dir / f"feat{c}_counts.bin", "<u4", (c,)),
                                     Spill(self.dir / f"feat{c}_rms.bin", "<u4", (c,)),
                                     Spill(self.dir / f"feat{c}_bins.bin", BIN_DTYPE))
        sp[0].append(np.asarray(fb.counts, np.uint32).reshape(n, c))
        sp[1].append(np.asarray(fb.rms_q4, np.uint32).reshape(n, c))
        b = np.empty(n, BIN_DTYPE)
        b["session"] = s.index
        b["first_sample"] = fb.first_sample + np.arange(n, dtype=np.int64) * fb.bin_samples
        b["bin_samples"] = fb.bin_samples
        b["samples_seen"] = (np.asarray(fb.samples_seen, np.uint32)
                             if len(fb.samples_seen) == n else fb.bin_samples)
        sp[2].append(b)

    def _on_snippets(self, s: SessionInfo, sn: pb.Snippets) -> None:
        n, k, ns = len(sn.sample), max(1, int(sn.k)), int(sn.n_samples)
        if n == 0 or len(sn.waveforms) != 2 * n * k * ns or len(sn.channel) != n:
            return
        sp = self.snippets.get((k, ns))
        if sp is None:
            sp = self.snippets[(k, ns)] = (
                Spill(self.dir / f"snip{k}x{ns}_wf.bin", "<i2", (k, ns)),
                Spill(self.dir / f"snip{k}x{ns}_nb.bin", "<i4", (k,)),
                Spill(self.dir / f"snip{k}x{ns}_meta.bin", SNIPPET_DTYPE))
        sp[0].append(np.frombuffer(sn.waveforms, "<i2").reshape(n, k, ns))
        nb = (np.asarray(sn.neighbors, np.int32).reshape(n, k) if len(sn.neighbors) == n * k
              else np.column_stack([np.asarray(sn.channel, np.int32),
                                    np.full((n, k - 1), -1, np.int32)]))
        sp[1].append(nb)
        m = np.empty(n, SNIPPET_DTYPE)
        m["session"] = s.index
        m["sample"] = np.asarray(sn.sample, np.int64)
        m["channel"] = np.asarray(sn.channel, np.int32)
        m["unit"] = np.asarray(sn.unit, np.int32) if len(sn.unit) == n else -1
        sp[2].append(m)
        self.snippet_pre = int(sn.pre)

    # ------------------------------------------------------------ raw
    def _on_raw(self, s: SessionInfo, rb: pb.RawBlock) -> None:
        data = self.raw_dec.last
        if data is None:
            return                       # undecodable: counted by the receiver
        s.first_sample = rb.first_sample if s.first_sample is None else min(
            s.first_sample, rb.first_sample)
        key = (s.index, int(rb.first_sample), int(rb.n_samples))
        cols = self._pending.get(key)
        if cols is None:
            cols = self._pending[key] = {}
            self._flush_raw()
        for j, ch in enumerate(rb.channels):
            if ch in cols:
                self.raw_duplicates += 1
            else:
                cols[int(ch)] = data[:, j]

    def _flush_raw(self, all_blocks: bool = False) -> None:
        while self._pending and (all_blocks or len(self._pending) > PENDING_BLOCKS):
            (sess, first, n), cols = self._pending.popitem(last=False)
            for ch, col in sorted(cols.items()):
                rc = self.raw.get(ch)
                if rc is None:
                    rc = self.raw[ch] = RawChannel(
                        Spill(self.dir / f"raw{ch}.bin", "<i2"),
                        Spill(self.dir / f"raw{ch}_blocks.bin", BLOCK_DTYPE))
                if first < rc.end.get(sess, -1):
                    self.raw_out_of_order += 1           # overlaps what was kept: dropped
                    continue
                rc.end[sess] = first + n
                rc.data.append(col)
                rc.blocks.append_row((sess, first, n))

    # ------------------------------------------------------------ clocks
    def _fit(self, s: SessionInfo) -> None:
        """Hub samples → host ns for one session: the time-sync fit (host_tools.timesync, one
        line per implant clock epoch) over all its packets; the telemetry's (sample, arrival)
        pairs when there are too few; else — or when a fit's drift is beyond any crystal
        (MAX_DRIFT_PPM: too few points against too much delay) — the nominal rate anchored on
        the least delayed packet."""
        fs = s.fs or 30000.0
        pieces: list[tuple[int, TimeSyncFit]] = []
        for ts, t in s.sync:
            if ts.host_time_ns:
                continue                          # a reply to a request, not a fresh point
            if not pieces or ts.clock_epoch != pieces[-1][1].epoch:
                pieces.append((int(ts.sample_index), TimeSyncFit(
                    window_s=1e9, max_points=len(s.sync) + 8)))
            pieces[-1][1].add_packet(ts, t)
        pieces = [(x, f) for x, f in pieces if f.result() is not None]
        source = "time_sync"
        if not pieces and len(s.telemetry_points) >= 3:
            f = TimeSyncFit(window_s=1e9, max_points=len(s.telemetry_points) + 8,
                            same_clock=True, method="envelope")
            for x, t in s.telemetry_points:
                f.add(x, t, s.fs)
            pieces, source = ([(s.telemetry_points[0][0], f)] if f.result() else []), "telemetry"
        bad = [f.drift_ppm for _, f in pieces
               if f.drift_ppm is not None and abs(f.drift_ppm) > MAX_DRIFT_PPM]
        if pieces and not bad:
            s.fit, s.fit_source = PiecewiseFit(pieces), source
            return
        pk = self.packets.array()
        mine = pk[pk["session"] == s.index]
        anchor = (float(np.min(mine["host_ns"] - mine["sample_index"] * 1e9 / fs))
                  if mine.size else float(s.first_host_ns))
        s.fit = NominalClock(fs, anchor)
        s.fit_source = (f"nominal ({source} fit rejected: drift {bad[0]:+.0f} ppm)" if bad
                        else "nominal")
        log.warning("session %08x: %s; nominal %.1f Hz clock", s.session_id,
                    s.fit_source, fs)

    def gap_ranges(self) -> dict[int, npt.NDArray[np.int64]]:
        """Per session index: sample ranges the hub reported it never had (implant-link gap,
        hub restart, stopped), as (k, 2) arrays sorted by start."""
        down = (pb.SHED_IMPLANT_GAP, pb.SHED_HUB_RESTART, pb.SHED_STOPPED)
        out: dict[int, npt.NDArray[np.int64]] = {}
        for s in self.sessions.values():
            rs = self.rx.sessions.get(s.session_id)
            rows = sorted((int(r.first_sample), int(r.end_sample)) for r in
                          (rs.shed_ranges if rs else []) if r.stream == pb.STREAM_UNSPECIFIED
                          and r.reason in down and r.end_sample > r.first_sample)
            out[s.index] = np.array(rows, np.int64).reshape(-1, 2)
        return out

    def session_list(self) -> list[SessionInfo]:
        return sorted(self.sessions.values(), key=lambda s: s.index)
