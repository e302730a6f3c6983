"""The bandwidth scheduler (DESIGN §3.3): priority classes, a measured budget, bounded queues,
lowest classes shed first, an outage buffer, and exact accounting of everything shed.

Classes, highest first: command results, telemetry, spike events, feature bins, snippets, raw.
Packets arrive as serialized :class:`hub.wire.pb.Envelope` bodies without a sequence number; the
scheduler stamps the per-stream sequence number when it sends a packet (protobuf concatenation
merges the fields), so on the host a sequence gap means a loss in transit, never a shed packet:
shed packets are reported separately, with their sample ranges, in ShedReport packets that are
built at the moment they are sent (always current, never queued, never shed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hub.uplink.base import Uplink
from hub.wire import SCHEMA_VERSION, Chunker, pb
from hub.wire.backoff import Backoff, RateLimit

log = logging.getLogger(__name__)

RESULT, TELEMETRY, SPIKES, FEATURES, SNIPPETS, RAW = (
    pb.STREAM_COMMAND_RESULT, pb.STREAM_TELEMETRY, pb.STREAM_SPIKES, pb.STREAM_FEATURES,
    pb.STREAM_SNIPPETS, pb.STREAM_RAW)
CLASSES = (RESULT, TELEMETRY, SPIKES, FEATURES, SNIPPETS, RAW)
NAMES = {RESULT: "results", TELEMETRY: "telemetry", SPIKES: "events", FEATURES: "feature_bins",
         SNIPPETS: "snippets", RAW: "raw"}
BUFFERED = (SPIKES, FEATURES)          # kept through outages (the outage buffer)
URGENT = (RESULT, TELEMETRY, SPIKES, FEATURES)   # may use the slots kept free (see run())
SHEDDABLE = (RAW, SNIPPETS)            # shed first, lowest first
MAX_PENDING_RANGES = 512               # beyond this, ranges of one kind are widened, not added
MAX_REPORT_BYTES = 16_000              # ranges per ShedReport packet


@dataclass
class Packet:
    """One envelope waiting to be sent; ``items`` is what accounting counts (events, bins,
    snippets, raw channel-samples, or 1)."""

    stream: pb.Stream
    body: bytes
    items: int = 1
    first_sample: int = 0
    end_sample: int = 0
    channels: tuple[int, ...] = ()
    #: deferred body (raw through the codec): called when the packet is sent, never if shed
    encode: Callable[[], bytes] | None = None
    size: int = 0                      # byte estimate while the body is deferred

    @property
    def nbytes(self) -> int:
        return self.size if self.encode is not None else len(self.body)


@dataclass
class ClassState:
    queue: deque[Packet] = field(default_factory=deque)
    queued_bytes: int = 0
    queued_items: int = 0
    produced: int = 0
    sent: int = 0
    shed: int = 0
    sent_packets: int = 0
    seq: int = 0
    produced_bytes: int = 0


@dataclass
class SchedulerConfig:
    outage_buffer_s: float = 30.0        # spikes + features kept while the link is down
    max_delay_s: float = 0.3             # snippets/raw older than this (in link time) are shed
    max_buffer_bytes: int = 32 << 20     # hard bound over everything queued
    telemetry_queue: int = 32            # telemetry packets kept during an outage
    headroom: float = 0.85               # share of the budget raw channels may plan to use
    #: links that take chunks per event (BLE): slots of each event kept for the urgent
    #: classes, filled with lower ones only this close to the event if none came
    reserve_slots: int = 4
    fill_guard_s: float = 0.002


class Scheduler:
    """Queues packets by class and feeds the uplink chunk by chunk."""

    def __init__(self, uplink: Uplink, fs: float = 30000.0, session_id: int = 0,
                 cfg: SchedulerConfig | None = None, budget_bps: float | None = None) -> None:
        self.uplink, self.fs, self.session_id = uplink, fs, session_id
        self.cfg = cfg or SchedulerConfig()
        self.classes = {c: ClassState() for c in CLASSES}
        self.chunker = Chunker(uplink.payload_size)
        self.budget_bps = budget_bps or uplink.nominal_bps or 250_000.0
        self.pending_ranges: list[pb.ShedRange] = []
        self._open_ranges: dict[tuple[int, int, tuple[int, ...]], pb.ShedRange] = {}
        self.report_seq = 0
        self._report_due = False
        self._last_report = 0.0
        self._final = False
        self.report_interval = 0.25          # seconds between ShedReports while shedding
        self._wake = asyncio.Event()
        self._retry: bytes | None = None
        self._rates = {c: 0.0 for c in CLASSES}   # produced bytes/s (EWMA)
        self._rate_bytes = {c: 0 for c in CLASSES}
        self._win_start = time.monotonic()
        self._win_bytes = 0
        self._win_busy = 0.0
        self.sent_bytes = 0
        self.throughput_bps = 0.0
        self.chunks_failed = 0
        self._was_connected = False
        #: a chunk the uplink refused is retried after a growing pause, never at once (a peer
        #: that fails without suspending would otherwise spin the event loop); logged sparingly
        self.send_backoff = Backoff(base_s=0.01, cap_s=1.0)
        self._fail_log = RateLimit(per_s=0.2, burst=1)
        self._late_s = 0.0                   # how late the loop wakes for a fill (EWMA)
        from hub.daemon.packets import Packer  # packets → scheduler: imported late
        from hub.daemon.rawlane import RawLane

        #: raw broadband: channel selection, codec and its accounting (hub.daemon.rawlane)
        self.raw = RawLane(self, Packer(session_id))

    @property
    def raw_channels(self) -> int:
        """Raw channels packed for the last block."""
        return self.raw.sent_channels

    # ------------------------------------------------------------ producing side
    def submit(self, pkt: Packet) -> None:
        """Queues a packet (or sheds it at once when its class cannot be delivered)."""
        cs = self.classes[pkt.stream]
        cs.produced += pkt.items
        cs.produced_bytes += pkt.nbytes
        self._rate_bytes[pkt.stream] += pkt.nbytes
        if pkt.stream in SHEDDABLE and not self.uplink.connected:
            self._shed(pkt, pb.SHED_OUTAGE)
            return
        cs.queue.append(pkt)
        cs.queued_bytes += pkt.nbytes
        cs.queued_items += pkt.items
        self._enforce_bounds()
        self._wake.set()

    def account_at_source(self, stream: pb.Stream, items: int, first: int, end: int,
                          reason: pb.ShedReason,
                          channels: tuple[int, ...] = ()) -> None:
        """Items produced but never packed (raw channels beyond what fits, or the link is down)."""
        if items <= 0:
            return
        cs = self.classes[stream]
        cs.produced += items
        cs.shed += items
        self._add_range(stream, reason, first, end, items, 0, channels)

    def report_gap(self, first: int, end: int, reason: pb.ShedReason, items: int = 0) -> None:
        """A stretch of samples the hub never had (implant-link gap, hub restart)."""
        self._add_range(pb.STREAM_UNSPECIFIED, reason, first, end, items, 0, ())

    def raw_channels_fit(self, n_available: int, bits_per_sample: float) -> int:
        """How many raw channels to pack for the next block, from the budget left over by the
        classes above raw and the raw queue's delay."""
        if not self.uplink.connected or n_available <= 0:
            return 0
        per_ch = self.fs * bits_per_sample * 1.04 + 8.0   # + framing overhead
        higher = sum(self._rates[c] for c in CLASSES if c != RAW) * 8
        n = int((self.cfg.headroom * self.budget_bps - higher) // per_ch)
        if self._delay(RAW) > self.cfg.max_delay_s / 2:
            n = min(n, self.raw.sent_channels - 1)
        return max(0, min(n, n_available))

    # ------------------------------------------------------------ shedding
    def _delay(self, stream: pb.Stream) -> float:
        """Seconds the class's queue would take at the budget (with everything above it)."""
        above = sum(self.classes[c].queued_bytes for c in CLASSES if c <= stream)
        return above * 8 / max(self.budget_bps, 1.0)

    def _enforce_bounds(self) -> None:
        cfg = self.cfg
        for stream in SHEDDABLE:             # raw first, then snippets
            cs = self.classes[stream]
            while cs.queue and self._delay(stream) > cfg.max_delay_s:
                self._shed(self._pop(stream), pb.SHED_BUDGET)
        for stream in BUFFERED:
            cs = self.classes[stream]
            while len(cs.queue) > 1 and (cs.queue[-1].end_sample - cs.queue[0].first_sample
                                         ) > cfg.outage_buffer_s * self.fs:
                self._shed(self._pop(stream), pb.SHED_QUEUE_FULL)
        tq = self.classes[TELEMETRY]
        while len(tq.queue) > cfg.telemetry_queue:
            self._shed(self._pop(TELEMETRY), pb.SHED_QUEUE_FULL)
        total = sum(c.queued_bytes for c in self.classes.values())
        for stream in reversed(CLASSES):     # hard memory bound, lowest class first
            cs = self.classes[stream]
            while total > cfg.max_buffer_bytes and cs.queue:
                pkt = self._pop(stream)
                total -= pkt.nbytes
                self._shed(pkt, pb.SHED_QUEUE_FULL)

    def _pop(self, stream: pb.Stream) -> Packet:
        cs = self.classes[stream]
        pkt = cs.queue.popleft()
        cs.queued_bytes -= pkt.nbytes
        cs.queued_items -= pkt.items
        return pkt

    def _shed(self, pkt: Packet, reason: pb.ShedReason) -> None:
        self.classes[pkt.stream].shed += pkt.items
        self._add_range(pkt.stream, reason, pkt.first_sample, pkt.end_sample, pkt.items, 1,
                        pkt.channels)

    def _add_range(self, stream: pb.Stream, reason: pb.ShedReason, first: int, end: int,
                   items: int, packets: int, channels: tuple[int, ...]) -> None:
        key = (stream, reason, channels)
        last = self._open_ranges.get(key)
        crowded = len(self.pending_ranges) >= MAX_PENDING_RANGES   # e.g. a long outage
        if last is not None and (last.end_sample == first or crowded):
            # contiguous, or too many ranges waiting: widen (counts stay exact)
            last.first_sample = min(last.first_sample, first)
            last.end_sample = end
            last.items += items
            last.packets += packets
        else:
            r = pb.ShedRange(stream=stream, reason=reason, first_sample=first, end_sample=end,
                             items=items, packets=packets, channels=channels)
            self.pending_ranges.append(r)
            self._open_ranges[key] = r
        self._report_due = True
        self._wake.set()

    def shed_all(self, reason: pb.ShedReason) -> None:
        """Sheds everything still queued (shutdown after the drain timeout)."""
        for stream in CLASSES:
            while self.classes[stream].queue:
                self._shed(self._pop(stream), reason)

    # ------------------------------------------------------------ reports
    def counters(self) -> list[pb.ClassCounters]:
        return [pb.ClassCounters(stream=s, produced=c.produced, sent=c.sent, shed=c.shed,
                                 queued=c.queued_items, queued_bytes=c.queued_bytes)
                for s, c in self.classes.items()]

    def request_report(self, final: bool = False) -> None:
        """Asks for a ShedReport (totals) at the next opportunity, even with no new ranges;
        ``final`` marks the session's last report (clean shutdown)."""
        self._final = self._final or final
        self._report_due = True
        self._wake.set()

    def _shed_report(self) -> bytes:
        take, size = 0, 0
        for r in self.pending_ranges:          # keep the packet well below the 64 kB limit
            size += r.ByteSize() + 4
            if take and size > MAX_REPORT_BYTES:
                break
            take += 1
        sent, self.pending_ranges = self.pending_ranges[:take], self.pending_ranges[take:]
        more = bool(self.pending_ranges)
        rep = pb.ShedReport(ranges=sent, totals=self.counters(), report_seq=self.report_seq,
                            final=self._final and not more)
        self.report_seq += 1
        self._open_ranges = {k: r for k, r in self._open_ranges.items()
                             if any(r is x for x in self.pending_ranges)}
        self._report_due = more
        self._last_report = time.monotonic()
        env = pb.Envelope(schema_version=SCHEMA_VERSION, stream=TELEMETRY,
                          session_id=self.session_id, hub_time_ns=time.monotonic_ns(), shed=rep)
        return env.SerializeToString()

    # ------------------------------------------------------------ sending side
    @property
    def idle(self) -> bool:
        return (not any(c.queue for c in self.classes.values()) and not self._report_due
                and self.chunker.pending == 0 and self._retry is None)

    def _fill(self) -> None:
        """Moves packets into the chunker by priority until a full chunk is pending."""
        ch = self.chunker
        while ch.pending < ch.body_size:
            if (self._report_due and not self.classes[RESULT].queue
                    and time.monotonic() - self._last_report >= self.report_interval):
                body = self._shed_report()
                stream = TELEMETRY
            else:
                nxt = next((s for s in CLASSES if self.classes[s].queue), None)
                if nxt is None:
                    return
                stream = nxt
                pkt = self._pop(stream)
                cs = self.classes[stream]
                cs.sent += pkt.items
                body = pkt.body if pkt.encode is None else pkt.encode()
            cs = self.classes[stream]
            ch.push(body + pb.Envelope(seq=cs.seq).SerializeToString())
            cs.seq += 1
            cs.sent_packets += 1

    def _next_chunk(self) -> bytes | None:
        if self._retry is not None:
            chunk, self._retry = self._retry, None
            return chunk
        self._fill()
        return self.chunker.pop(flush=True)

    def _urgent(self) -> bool:
        """Whether the next chunk would carry a class above snippets."""
        return (self._retry is not None or any(self.classes[c].queue for c in URGENT)
                or (self._report_due
                    and time.monotonic() - self._last_report >= self.report_interval))

    def _send_window(self) -> float:
        """0 when the next chunk is to be cut and sent now, else how long to wait (a wake-up:
        a new packet or room on the link, comes first).

        Late binding: a chunk's content is decided only when the link can take it, so nothing
        waits behind a chunk cut earlier. On a link that takes chunks per event (BLE, whose
        controller sends what it holds in order), lower classes fill a connection event only
        up to ``reserve_slots`` before it; the reserved slots are theirs too, but only
        ``fill_guard_s`` before the event, so an event or feature bin that comes meanwhile
        still leaves in the next event instead of queueing behind snippets and raw."""
        slots = self.uplink.send_slots()
        if slots is None:
            return 0.0
        if slots <= 0:
            return 0.2                       # on_flow wakes us when the controller has room
        if slots > self.cfg.reserve_slots or self._urgent():
            return 0.0
        nxt = self.uplink.next_event_s()
        guard = self.cfg.fill_guard_s + self._late_s     # a busy CPU wakes us late
        return 0.0 if nxt is None else max(0.0, nxt - guard)

    async def run(self) -> None:
        """Sends until cancelled."""
        self.uplink.on_flow = self._wake.set
        while True:
            self._tick()
            if not self.uplink.connected:
                await self.uplink.wait_connected(0.2)
                continue
            self._wake.clear()
            wait = self._send_window()
            if wait > 0:
                t = time.monotonic()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    if wait < 0.1:               # a fill window: learn how late we wake
                        late = time.monotonic() - t - wait
                        self._late_s = min(0.8 * self._late_s + 0.2 * late, 0.005)
                if not self.idle:                # data waited for the link: it is busy
                    self._win_busy += time.monotonic() - t
                continue
            chunk = self._next_chunk()
            if chunk is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                continue
            t = time.monotonic()
            ok = await self.uplink.send(chunk)
            self._win_busy += time.monotonic() - t
            # send() need not suspend (a socket with room): let the loop turn once a chunk,
            # outside the busy time the budget is measured with
            await asyncio.sleep(0)
            if ok:
                self.sent_bytes += len(chunk)
                self._win_bytes += len(chunk)
                self.send_backoff.reset()
            else:
                self.chunks_failed += 1
                self._retry = chunk
                if self._fail_log.allow():
                    log.warning("uplink refused a chunk (%d refused so far, %d not logged); "
                                "retrying with back-off", self.chunks_failed,
                                self._fail_log.take_suppressed())
                await asyncio.sleep(self.send_backoff.next())

    async def drain(self, timeout: float) -> bool:
        """Waits until everything queued has been sent; False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.idle:
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.02)
        return True

    def _tick(self) -> None:
        """Every half second: produced rates per class and the measured budget."""
        now = time.monotonic()
        w = now - self._win_start
        if w < 0.5:
            return
        for c in CLASSES:
            self._rates[c] = 0.7 * self._rates[c] + 0.3 * self._rate_bytes[c] / w
            self._rate_bytes[c] = 0
        rate = self._win_bytes * 8 / w
        self.throughput_bps = rate
        nominal = self.uplink.nominal_bps
        connected = self.uplink.connected
        if connected and not self._was_connected and nominal:
            self.budget_bps = nominal                # a new connection: start from the nominal
        self._was_connected = connected
        if connected:
            if self._win_busy > 0.85 * w and rate < 0.05 * self.budget_bps:
                pass                                 # a stall (radio outage), not the capacity
            elif self._win_busy > 0.85 * w:          # saturated: the link's real capacity
                self.budget_bps = 0.5 * self.budget_bps + 0.5 * rate
            else:                                    # spare capacity: probe upwards
                grow = self.budget_bps * 1.1
                cap = nominal if nominal else 4 * max(rate, 100_000.0)
                self.budget_bps = max(rate, min(grow, cap))
        self._win_start, self._win_bytes, self._win_busy = now, 0, 0.0
