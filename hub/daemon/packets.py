"""Envelopes for everything the hub sends, built from pipeline results (runs in the worker
thread, so protobuf building stays off the event loop). Sample indices are absolute: the
pipeline counts from its own start, ``base`` is where that start sits on the hub's clock."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.daemon.rawcodec import RawCodec
from hub.daemon.scheduler import FEATURES, RAW, RESULT, SNIPPETS, SPIKES, TELEMETRY, Packet
from hub.kernels import FeatureBins
from hub.wire import SCHEMA_VERSION, pb

#: Raw blocks and snippets are split into packets of about this size: a packet in the chunker is
#: sent whole before anything else, so big packets would delay events (head-of-line blocking:
#: 1 kB is ~6 ms at 1.3 Mbit/s).
MAX_PACKET_BYTES = 1_000


class Packer:
    def __init__(self, session_id: int) -> None:
        self.session_id = session_id

    def envelope(self, stream: pb.Stream, sample_index: int = 0,
                 hub_time_ns: int | None = None) -> pb.Envelope:
        return pb.Envelope(schema_version=SCHEMA_VERSION, stream=stream, session_id=self.session_id,
                           sample_index=sample_index,
                           hub_time_ns=time.monotonic_ns() if hub_time_ns is None else hub_time_ns)

    def spikes(self, events: npt.NDArray[Any], base: int, first: int, end: int,
               t_ns: int, unit_events: npt.NDArray[Any] | None = None) -> Packet | None:
        """Spikes (EVENT_DTYPE) and the sorter's unit events (SORT_EVENT_DTYPE) of one block;
        accounting counts the spikes."""
        n_units = 0 if unit_events is None else int(unit_events.size)
        if not events.size and not n_units:
            return None
        env = self.envelope(SPIKES, end, t_ns)
        sb = env.spikes
        sb.first_sample, sb.end_sample = first, end
        s = events["sample"].astype(np.int64) + base
        sb.offset.extend((s - first).clip(0).tolist())
        sb.channel.extend(events["channel"].tolist())
        sb.unit.extend(events["unit"].tolist())
        sb.amplitude.extend(np.rint(events["amplitude"]).astype(np.int64).tolist())
        if unit_events is not None:
            for ue in unit_events:
                sb.unit_events.add(sample=int(ue["sample"]) + base, kind=int(ue["kind"]),
                                   unit=int(ue["unit"]), other=int(ue["other"]),
                                   channel=max(0, int(ue["channel"])))
        return Packet(SPIKES, env.SerializeToString(), int(events.size), first, end)

    def features(self, bins: FeatureBins, base: int, bin_samples: int, t_ns: int,
                 end: int, hg_power: npt.NDArray[np.float32] | None = None) -> Packet | None:
        n = int(bins.index.size)
        if not n:
            return None
        env = self.envelope(FEATURES, end, t_ns)
        fb = env.features
        first_bin = int(bins.index[0])
        fb.first_bin, fb.bin_samples, fb.n_bins = first_bin, bin_samples, n
        fb.n_channels = int(bins.counts.shape[1])
        fb.first_sample = base + first_bin * bin_samples
        fb.counts.extend(bins.counts.ravel().tolist())
        rms = np.rint(np.sqrt(np.maximum(bins.power, 0)) * 16).astype(np.int64)
        fb.rms_q4.extend(rms.ravel().tolist())
        fb.samples_seen.extend(bins.samples.tolist())
        if hg_power is not None:              # ECoG mode (lfp=true): high-gamma RMS × 16
            hg = np.rint(np.sqrt(np.nan_to_num(np.maximum(hg_power, 0))) * 16)
            fb.hg_rms_q4.extend(hg.astype(np.int64).ravel().tolist())
        return Packet(FEATURES, env.SerializeToString(), n, fb.first_sample,
                      fb.first_sample + n * bin_samples)

    def snippets(self, sev: npt.NDArray[Any], wf: npt.NDArray[np.float32],
                 neighbors: npt.NDArray[np.int32], pre: int, base: int, first: int, end: int,
                 t_ns: int) -> list[Packet]:
        """Waveforms in packets of about MAX_PACKET_BYTES (at least one snippet each)."""
        if not sev.size:
            return []
        per = max(1, MAX_PACKET_BYTES // (2 * wf.shape[1] * wf.shape[2] + 8))
        q = np.clip(np.rint(wf), -32768, 32767).astype("<i2")
        out = []
        for i in range(0, sev.size, per):
            ev, w = sev[i:i + per], q[i:i + per]
            env = self.envelope(SNIPPETS, end, t_ns)
            sn = env.snippets
            sn.n_samples, sn.pre, sn.k = int(wf.shape[2]), pre, int(wf.shape[1])
            sn.sample.extend((ev["sample"].astype(np.int64) + base).tolist())
            sn.channel.extend(ev["channel"].tolist())
            sn.unit.extend(ev["unit"].tolist())
            sn.neighbors.extend(neighbors[ev["channel"]].ravel().tolist())
            sn.waveforms = w.tobytes()
            out.append(Packet(SNIPPETS, env.SerializeToString(), int(ev.size), first, end))
        return out

    def raw(self, block: npt.NDArray[np.int16], first: int, channels: list[int],
            t_ns: int) -> list[Packet]:
        """Raw int16 for ``channels`` in groups; items are channel-samples."""
        n = block.shape[0]
        if not channels or not n:
            return []
        group = max(1, MAX_PACKET_BYTES // (2 * n))
        out = []
        for i in range(0, len(channels), group):
            chans = channels[i:i + group]
            env = self.envelope(RAW, first + n, t_ns)
            rb = env.raw
            rb.first_sample, rb.n_samples, rb.encoding = first, n, pb.RAW_INT16_LE
            rb.channels.extend(chans)
            rb.data = np.ascontiguousarray(block[:, chans], dtype="<i2").tobytes()
            out.append(Packet(RAW, env.SerializeToString(), n * len(chans), first, first + n,
                              tuple(chans)))
        return out

    def raw_coded(self, block: npt.NDArray[np.int16], first: int, channels: list[int],
                  t_ns: int, rc: RawCodec) -> list[Packet]:
        """One packet per channel, encoded by ``rc`` when the scheduler sends it."""
        n = block.shape[0]
        est = int(2 * n / rc.ratio) + 48
        out = []
        for ch in channels:
            env = self.envelope(RAW, first + n, t_ns)
            env.raw.first_sample, env.raw.n_samples = first, n
            env.raw.channels.append(ch)
            col = np.ascontiguousarray(block[:, ch])
            out.append(Packet(RAW, b"", n, first, first + n, (ch,),
                              encode=functools.partial(rc.encode, env, col, ch), size=est))
        return out

    def telemetry(self, tel: pb.Telemetry, sample_index: int) -> Packet:
        env = self.envelope(TELEMETRY, sample_index)
        env.telemetry.CopyFrom(tel)
        return Packet(TELEMETRY, env.SerializeToString(), 1, sample_index, sample_index)

    def time_sync(self, ts: pb.TimeSync) -> Packet:
        env = self.envelope(TELEMETRY, ts.sample_index, ts.hub_time_ns)
        env.time_sync.CopyFrom(ts)
        return Packet(TELEMETRY, env.SerializeToString(), 0, ts.sample_index, ts.sample_index)

    def log(self, level: int, logger: str, message: str) -> Packet:
        env = self.envelope(TELEMETRY)
        env.log.level, env.log.logger, env.log.message = level, logger, message[:1000]
        return Packet(TELEMETRY, env.SerializeToString(), 0)

    def result(self, res: pb.CommandResult) -> Packet:
        env = self.envelope(RESULT)
        env.result.CopyFrom(res)
        return Packet(RESULT, env.SerializeToString(), 1)
