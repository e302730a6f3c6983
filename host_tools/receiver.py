"""Host-side receiver: chunks in (from TCP, or BLE notifications), decoded packets out, with
sequence continuity, exact per-class accounting against the hub's shed reports, detected
gaps (hub restarts, implant-link gaps) and latency from sample time to host decode.

Transport-independent: :mod:`host_tools.session` feeds it every chunk of any link
(:meth:`Receiver.feed_chunk`) and says when a connection was replaced
(:meth:`Receiver.link_changed`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from host_tools.latency import LatencyHistogram
from hub.kernels import codec
from hub.kernels._ffi import KernelError
from hub.wire import Reassembler, pb

log = logging.getLogger(__name__)

CLASS_NAMES = {pb.STREAM_SPIKES: "events", pb.STREAM_FEATURES: "feature_bins",
               pb.STREAM_SNIPPETS: "snippets", pb.STREAM_RAW: "raw",
               pb.STREAM_TELEMETRY: "telemetry", pb.STREAM_COMMAND_RESULT: "results"}
SHED_REASONS = {v: k for k, v in pb.ShedReason.items()}


#: sample indices and clocks beyond this (≈ 4.9 × 10⁹ years at 30 kHz) and channel ids beyond
#: MAX_CHANNEL are not a hub's: such an envelope is a bad packet (counted, skipped), since
#: storing it would overflow int64 / int32 columns downstream (NWB, latency, LSL)
MAX_SAMPLE = 1 << 62
MAX_CHANNEL = (1 << 31) - 1


def out_of_range(env: pb.Envelope) -> str:
    """Why an envelope's numbers cannot be a hub's (a sample, clock or channel no int64 /
    int32 column holds: MAX_SAMPLE, MAX_CHANNEL; a bin length is held as a channel id is), or
    '' — such a packet is damaged or forged (Receiver counts it as a bad packet)."""
    samples = [env.sample_index, env.hub_time_ns]
    channels: list[int] = []
    kind = env.WhichOneof("payload")
    if kind == "spikes":
        sb = env.spikes
        samples += [sb.first_sample + max(sb.offset, default=0)]
        samples += [e.sample for e in sb.unit_events]
        channels += list(sb.channel) + [e.channel for e in sb.unit_events]
    elif kind == "features":
        fb = env.features
        samples += [fb.first_sample + (fb.n_bins + 1) * fb.bin_samples]
        channels += [fb.bin_samples]              # an int32 column too
    elif kind == "snippets":
        samples += list(env.snippets.sample)
        channels += list(env.snippets.channel)
    elif kind == "raw":
        samples += [env.raw.first_sample + env.raw.n_samples]
        channels += list(env.raw.channels)
    elif kind == "time_sync":
        samples += [env.time_sync.sample_index]
    if max(samples) >= MAX_SAMPLE:
        return f"sample or clock {max(samples)} ≥ 2^62"
    if channels and max(channels) > MAX_CHANNEL:
        return f"channel {max(channels)} > 2^31 − 1"
    return ""


class RawDecoder:
    """Raw blocks back to int16: RAW_INT16_LE as is, RAW_NK_CODEC with one codec stream per
    (session, channel), (re)started at every packet that carries the stream header."""

    def __init__(self) -> None:
        self._dec: dict[tuple[int, int], tuple[bytes, codec.Decoder]] = {}
        self.undecodable = 0          # channel-samples that could not be decoded
        self.coded_bytes = 0
        self.samples = 0

    def decode(self, session: int, rb: pb.RawBlock) -> np.ndarray[Any, np.dtype[np.int16]] | None:
        """(n_samples, n_channels) int16, or None (counted) when it cannot be decoded."""
        n, c = int(rb.n_samples), len(rb.channels)
        self.coded_bytes += len(rb.data)
        if rb.encoding == pb.RAW_INT16_LE:
            if len(rb.data) != 2 * n * c:
                self.undecodable += n * c
                return None
            self.samples += n * c
            return np.frombuffer(rb.data, "<i2").reshape(n, c).astype(np.int16)
        key = (session, rb.channels[0] if c == 1 else -1)
        have = self._dec.get(key)
        try:
            if rb.codec_header and (have is None or have[0] != rb.codec_header):
                have = self._dec[key] = (rb.codec_header, codec.Decoder(rb.codec_header))
            out = have[1].decode(rb.data)[0] if have is not None and c == 1 else None
        except KernelError:
            out = None
        if out is None or out.shape != (n, 1):
            self.undecodable += n * c
            return None
        self.samples += n
        return out


def items_of(env: pb.Envelope) -> int:
    """What accounting counts for one packet (matches the hub's Packet.items)."""
    kind = env.WhichOneof("payload")
    if kind == "spikes":
        return len(env.spikes.offset)
    if kind == "features":
        return int(env.features.n_bins)
    if kind == "snippets":
        return len(env.snippets.sample)
    if kind == "raw":
        return int(env.raw.n_samples) * len(env.raw.channels)
    if kind in ("telemetry", "result"):
        return 1
    return 0


@dataclass
class UnitTable:
    """The hub sorter's unit lifecycle as the host learns it from spike batches: live ids,
    and where merged ids went (``resolve`` relabels a spike's unit as the hub now knows it)."""

    live: set[int] = field(default_factory=set)
    merged_into: dict[int, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"births": 0, "merges": 0,
                                                            "retirements": 0, "labels": 0})

    def add(self, events: Any) -> None:
        for e in events:
            if e.kind == pb.UNIT_BIRTH:
                self.live.add(e.unit)
                self.counts["births"] += 1
            elif e.kind == pb.UNIT_MERGE:
                self.merged_into[e.other] = e.unit
                self.live.discard(e.other)
                self.counts["merges"] += 1
            elif e.kind == pb.UNIT_RETIRE:
                self.live.discard(e.unit)
                self.counts["retirements"] += 1
            elif e.kind == pb.UNIT_LABEL:    # a spike sent earlier: counted, not re-applied
                self.counts["labels"] += 1

    def resolve(self, unit: int) -> int:
        seen = set()
        while unit in self.merged_into and unit not in seen:
            seen.add(unit)
            unit = self.merged_into[unit]
        return unit


@dataclass
class Session:
    """What the host learned about one hub process (session id)."""

    session_id: int
    delivered: dict[int, int] = field(default_factory=dict)
    next_seq: dict[int, int] = field(default_factory=dict)
    lost_packets: dict[int, int] = field(default_factory=dict)    # sequence gaps
    totals: dict[int, pb.ClassCounters] = field(default_factory=dict)
    shed_ranges: list[pb.ShedRange] = field(default_factory=list)
    final: bool = False
    first_sample: int | None = None    # first data sample seen
    last_sample: int = 0               # end of the latest data seen
    fs: float = 0.0
    units: UnitTable = field(default_factory=lambda: UnitTable())


class Receiver:
    def __init__(self, on_envelope: Callable[[pb.Envelope, int], None] | None = None,
                 keep_raw: bool = False) -> None:
        self.reassembler = Reassembler()
        self.raw = RawDecoder()
        self.keep_raw = keep_raw
        #: channel → [(first_sample, samples)] of decoded raw (with keep_raw)
        self.raw_blocks: dict[int, list[tuple[int, np.ndarray[Any, Any]]]] = {}
        self.sessions: dict[int, Session] = {}
        self.order: list[int] = []
        self.on_envelope = on_envelope
        self.latency_ms = {k: LatencyHistogram() for k in ("events", "feature_bins", "raw")}
        self.packets = 0
        self.bad_packets = 0
        self.out_of_range = 0          # of them: parsed, but numbers no hub sends (out_of_range)
        self.bytes = 0
        self.first_ns = 0
        self.last_ns = 0
        self.results: list[pb.CommandResult] = []
        self.bytes_per_s: list[int] = []      # by second of arrival since the first chunk
        self.last_telemetry: pb.Telemetry | None = None
        self.logs: list[pb.LogRecord] = []
        self._last_seq: int | None = None
        self._link_changed = False
        #: reconnects where the chunk stream went on / started afresh
        self.reconnects = {"continued": 0, "restarted": 0}

    # ------------------------------------------------------------ input
    def link_changed(self) -> None:
        """The connection was replaced. The hub keeps one chunk stream per session (the BLE
        uplink re-sends what its controller never confirmed), so the next chunk decides: the
        next sequence number continues the stream (a packet cut by the reconnect completes);
        any other starts it afresh — the partial packet is dropped and the jump is not counted
        as lost chunks (a restarted hub counts from 0; packet sequence numbers and the hub's
        reports account for what is missing)."""
        self._link_changed = True

    def reset_link(self) -> None:
        """Forget partial packets now (a stream known to be new)."""
        self.reassembler.reset()
        self._last_seq = None

    def feed_chunk(self, chunk: bytes, t_ns: int | None = None) -> list[pb.Envelope]:
        t = time.monotonic_ns() if t_ns is None else t_ns
        self.first_ns = self.first_ns or t
        self.last_ns = t
        self.bytes += len(chunk)
        seq = int.from_bytes(chunk[2:4], "little") if len(chunk) >= 4 else None
        if self._link_changed and seq is not None:
            self._link_changed = False
            if self._last_seq is not None and seq == (self._last_seq + 1) & 0xFFFF:
                self.reconnects["continued"] += 1
            else:
                self.reconnects["restarted"] += 1
                self.reassembler.reset()
        if seq is not None:
            self._last_seq = seq
        sec = (t - self.first_ns) // 1_000_000_000
        if 0 <= sec < 1_000_000:
            if sec >= len(self.bytes_per_s):
                self.bytes_per_s.extend([0] * (sec + 1 - len(self.bytes_per_s)))
            self.bytes_per_s[sec] += len(chunk)
        out = []
        for payload in self.reassembler.feed(chunk):
            try:
                env = pb.Envelope.FromString(payload)
            except DecodeError:
                self.bad_packets += 1
                continue
            if self.feed_envelope(env, t):
                out.append(env)
        return out

    def feed_envelope(self, env: pb.Envelope, t_ns: int) -> bool:
        """One parsed envelope: False when its numbers are no hub's (out_of_range; a counted
        bad packet, skipped), else taken in (as feed_chunk does with every packet)."""
        why = out_of_range(env)
        if why:
            if not self.out_of_range:
                log.warning("a packet out of range skipped (%s); further ones only counted", why)
            self.bad_packets += 1
            self.out_of_range += 1
            return False
        self._on(env, t_ns)
        return True

    def _session(self, sid: int) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session(sid)
            self.order.append(sid)
            if len(self.order) > 1:
                log.warning("hub session changed to %08x (hub restarted)", sid)
        return s

    def _on(self, env: pb.Envelope, t_ns: int) -> None:
        self.packets += 1
        s = self._session(env.session_id)
        st = env.stream
        exp = s.next_seq.get(st)
        if exp is not None and env.seq != exp:
            gap = env.seq - exp
            s.lost_packets[st] = s.lost_packets.get(st, 0) + max(gap, 0)
            log.warning("stream %s: sequence %d after %d (%d lost in transit)",
                        CLASS_NAMES.get(st, st), env.seq, exp - 1, gap)
        s.next_seq[st] = env.seq + 1
        kind = env.WhichOneof("payload")
        s.delivered[st] = s.delivered.get(st, 0) + items_of(env)
        if kind in ("spikes", "features", "raw", "snippets"):
            first = (env.spikes.first_sample if kind == "spikes" else
                     env.features.first_sample if kind == "features" else
                     env.raw.first_sample if kind == "raw" else env.sample_index)
            s.first_sample = first if s.first_sample is None else min(s.first_sample, first)
            s.last_sample = max(s.last_sample, env.sample_index)
            self._latency(env, kind, s, t_ns)
            if kind == "spikes" and env.spikes.unit_events:
                s.units.add(env.spikes.unit_events)
            if kind == "raw":
                data = self.raw.decode(env.session_id, env.raw)
                if data is not None and self.keep_raw:
                    for j, ch in enumerate(env.raw.channels):
                        self.raw_blocks.setdefault(ch, []).append(
                            (env.raw.first_sample, data[:, j].copy()))
        elif kind == "shed":
            for c in env.shed.totals:
                s.totals[c.stream] = c
            s.shed_ranges.extend(env.shed.ranges)
            self.compact_shed_ranges()
            s.final = s.final or env.shed.final
        elif kind == "telemetry":
            self.last_telemetry = env.telemetry
            s.fs = env.telemetry.sampling_frequency or s.fs
        elif kind == "time_sync":
            s.fs = env.time_sync.sampling_frequency or s.fs
        elif kind == "result":
            self.results.append(env.result)
        elif kind == "log":
            self.logs.append(env.log)
            log.info("hub log [%s] %s: %s", env.log.level, env.log.logger, env.log.message)
        if self.on_envelope is not None:
            self.on_envelope(env, t_ns)

    def _latency(self, env: pb.Envelope, kind: str, s: Session, t_ns: int) -> None:
        if not s.fs or not env.hub_time_ns:
            return
        # hub_time_ns is when sample_index arrived at the hub: sample time = that minus the
        # samples after it. Same-machine runs share CLOCK_MONOTONIC with the hub.
        if kind == "spikes":
            samples = env.spikes.first_sample + np.asarray(env.spikes.offset, np.int64)
            age = (env.sample_index - samples) / s.fs * 1e3
            base = (t_ns - env.hub_time_ns) / 1e6
            self.latency_ms["events"].add(base + age)
        elif kind == "features":
            self.latency_ms["feature_bins"].add((t_ns - env.hub_time_ns) / 1e6)
        elif kind == "raw":
            self.latency_ms["raw"].add((t_ns - env.hub_time_ns) / 1e6)

    # ------------------------------------------------------------ results
    def accounting(self) -> dict[str, dict[str, int]]:
        """Per class, summed over sessions: produced (hub), delivered (host), shed (hub
        reports), queued at the last report, lost in transit (sequence gaps, packets),
        unaccounted = produced − delivered − shed − queued.
        A session that ended without its final report (hub killed) cannot be closed: its last
        totals predate its last packets (items produced after that report may have been
        delivered, or died with the hub). For it, ``produced`` is what is known to exist —
        the last report's count, or what was delivered and shed if more
        (``produced_after_last_report``) — and ``unclosed`` is what the hub reported producing
        that the host never learned the fate of (≥ 0; the hub-restart gap covers its samples).
        """
        out: dict[str, dict[str, int]] = {}
        for st, name in CLASS_NAMES.items():
            row = {"produced": 0, "delivered": 0, "shed": 0, "queued": 0, "lost_packets": 0,
                   "unaccounted": 0, "unclosed": 0, "produced_after_last_report": 0}
            for s in self.sessions.values():
                tot = s.totals.get(st)
                produced, shed = (tot.produced, tot.shed) if tot else (0, 0)
                queued = tot.queued if tot else 0
                delivered = s.delivered.get(st, 0)
                row["shed"] += shed
                row["delivered"] += delivered
                row["lost_packets"] += s.lost_packets.get(st, 0)
                if s.final:
                    row["produced"] += produced
                    row["queued"] += queued
                    row["unaccounted"] += produced - delivered - shed - queued
                else:
                    known = max(produced, delivered + shed)
                    row["produced"] += known
                    row["produced_after_last_report"] += known - produced
                    row["unclosed"] += known - delivered - shed
            out[name] = row
        return out

    #: merge a session's shed ranges once it holds this many (an hour of per-block raw shed
    #: ranges would otherwise stay in memory one message each: the soak's host growth)
    compact_at = 2048

    def compact_shed_ranges(self) -> None:
        """Merges each session's overlapping or touching shed ranges of one class, reason and
        channel set, once the session holds ``compact_at`` of them (totals are kept)."""
        for s in self.sessions.values():
            if len(s.shed_ranges) < self.compact_at:
                continue
            merged: dict[tuple[int, int, tuple[int, ...]], pb.ShedRange] = {}
            out: list[pb.ShedRange] = []
            for r in s.shed_ranges:
                key = (r.stream, r.reason, tuple(r.channels))
                m = merged.get(key)
                if m is not None and m.first_sample <= r.first_sample <= m.end_sample:
                    m.end_sample = max(m.end_sample, r.end_sample)
                    m.items += r.items
                    m.packets += r.packets
                    continue
                m = merged[key] = pb.ShedRange()
                m.CopyFrom(r)
                out.append(m)
            s.shed_ranges[:] = out
            self.compact_at = max(self.compact_at, 2 * len(out))

    def gaps(self) -> list[dict[str, Any]]:
        """Sample ranges the host knows it never got data for: hub restarts (seen by the host
        as a session change) and the hub's own gap reports (implant link, restart)."""
        out: list[dict[str, Any]] = []
        prev: Session | None = None
        for sid in self.order:
            s = self.sessions[sid]
            if prev is not None and s.first_sample is not None:
                out.append({"reason": "hub_restart_seen_by_host", "from_session": prev.session_id,
                            "to_session": sid, "first_sample": prev.last_sample,
                            "end_sample": s.first_sample})
            for r in s.shed_ranges:
                if r.stream == pb.STREAM_UNSPECIFIED:
                    out.append({"reason": SHED_REASONS.get(r.reason, str(r.reason)),
                                "session": sid, "first_sample": r.first_sample,
                                "end_sample": r.end_sample})
            prev = s
        return out

    def shed_summary(self) -> dict[str, dict[str, int]]:
        """Shed items per class and reason, from the reported ranges."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sessions.values():
            for r in s.shed_ranges:
                if r.stream == pb.STREAM_UNSPECIFIED:
                    continue
                d = out.setdefault(CLASS_NAMES.get(r.stream, str(r.stream)), {})
                key = SHED_REASONS.get(r.reason, str(r.reason))
                d[key] = d.get(key, 0) + r.items
        return out

    def shed_ranges(self, limit: int = 20) -> dict[str, dict[str, list[list[int]]]]:
        """Reported shed sample ranges per class and reason, contiguous ones merged."""
        out: dict[str, dict[str, list[list[int]]]] = {}
        for s in self.sessions.values():
            for r in s.shed_ranges:
                if r.stream == pb.STREAM_UNSPECIFIED:
                    continue
                d = out.setdefault(CLASS_NAMES.get(r.stream, str(r.stream)), {})
                lst = d.setdefault(SHED_REASONS.get(r.reason, str(r.reason)), [])
                if lst and lst[-1][1] >= r.first_sample >= lst[-1][0]:
                    lst[-1][1] = max(lst[-1][1], r.end_sample)
                else:
                    lst.append([r.first_sample, r.end_sample])
        for d in out.values():
            for k, lst in d.items():
                if len(lst) > limit:
                    d[k] = [*lst[:limit], [-1, len(lst)]]
        return out

    def summary(self) -> dict[str, Any]:
        wall = (self.last_ns - self.first_ns) / 1e9 if self.last_ns > self.first_ns else 0.0
        lat = {k: h.summary() for k, h in self.latency_ms.items()}
        rs = self.reassembler.stats
        return {
            "sessions": [f"{sid:08x}" for sid in self.order],
            "final_report_seen": bool(self.order) and self.sessions[self.order[-1]].final,
            "classes": self.accounting(),
            "shed_by_reason": self.shed_summary(),
            "shed_ranges": self.shed_ranges(),
            "gaps": self.gaps(),
            "latency_ms": lat,
            "latency_hist_ms": {k: h.coarse() for k, h in self.latency_ms.items()},
            "timeline": {"bytes_per_s": self.bytes_per_s},
            "link": {"bytes": self.bytes, "seconds": round(wall, 3),
                     "throughput_bps": round(self.bytes * 8 / wall) if wall else 0,
                     "chunks": rs.chunks, "lost_chunks": rs.lost_chunks,
                     "bad_chunks": rs.bad_chunks, "dropped_partial": rs.dropped_partial,
                     "packets": self.packets, "bad_packets": self.bad_packets,
                     "out_of_range": self.out_of_range,
                     "reconnects": dict(self.reconnects)},
            "raw_decode": {"samples": self.raw.samples, "undecodable": self.raw.undecodable,
                           "compression": round(2 * self.raw.samples / self.raw.coded_bytes, 3)
                           if self.raw.coded_bytes else None},
            "hub_telemetry": telemetry_dict(self.last_telemetry),
            "units": {**{k: sum(self.sessions[i].units.counts[k] for i in self.order)
                         for k in ("births", "merges", "retirements", "labels")},
                      "live": sum(len(self.sessions[i].units.live) for i in self.order)},
            "command_results": [{"request_id": r.request_id, "command": r.command,
                                 "code": pb.ResultCode.Name(r.code), "message": r.message}
                                for r in self.results],
        }


def telemetry_dict(t: pb.Telemetry | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"cpu_load": round(t.cpu_load, 4),
            "kernel_seconds": {k: round(v, 4) for k, v in t.kernel_seconds.items()},
            "stage_seconds": {k: round(v, 4) for k, v in t.stage_seconds.items()},
            "budget_bps": round(t.budget_bps), "uplink_bps": round(t.uplink_bps),
            "raw_channels_sent": t.raw_channels_sent, "link_frames": t.link_frames,
            "link_corrupt": t.link_corrupt, "link_missing_frames": t.link_missing_frames,
            "link_garbage_bytes": t.link_garbage_bytes, "blocks": t.blocks,
            "overruns": t.overruns, "stage_restarts": t.stage_restarts,
            "uplink_connects": t.uplink_connects, "n_channels": t.n_channels,
            "sampling_frequency": t.sampling_frequency, "running": t.running,
            "config": json.loads(t.config_json) if t.config_json else None}

