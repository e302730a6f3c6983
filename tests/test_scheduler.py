"""Scheduler: priority order, shedding lowest first, outage buffer, exact accounting."""

from __future__ import annotations

import asyncio

from hub.daemon.scheduler import FEATURES, RAW, SNIPPETS, SPIKES, TELEMETRY, Packet, Scheduler
from hub.uplink.base import CommandHandler, Uplink
from hub.wire import Reassembler, pb
from tests.virtual_clock import run as vrun


class MemoryUplink(Uplink):
    """Chunks go to a list; ``up`` toggles the link."""

    def __init__(self, payload: int = 244, rate_bps: float | None = None) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.up = True
        self.rate = rate_bps

    @property
    def payload_size(self) -> int:
        return 244

    @property
    def connected(self) -> bool:
        return self.up

    @property
    def nominal_bps(self) -> float | None:
        return self.rate

    async def start(self, on_command: CommandHandler) -> None:
        pass

    async def send(self, chunk: bytes) -> bool:
        if not self.up:
            return False
        if self.rate:
            await asyncio.sleep(len(chunk) * 8 / self.rate)
        self.chunks.append(chunk)
        return True

    async def stop(self) -> None:
        pass


def packet(stream: pb.Stream, first: int, size: int = 100, items: int = 1) -> Packet:
    env = pb.Envelope(stream=stream, sample_index=first + 10)
    env.log.message = "x" * size
    return Packet(stream, env.SerializeToString(), items, first, first + 10)


def decode(chunks: list[bytes]) -> list[pb.Envelope]:
    r = Reassembler()
    return [pb.Envelope.FromString(p) for c in chunks for p in r.feed(c)]


def totals(envs: list[pb.Envelope]) -> dict[int, pb.ClassCounters]:
    last = [e for e in envs if e.WhichOneof("payload") == "shed"][-1]
    return {t.stream: t for t in last.shed.totals}


def test_priority_order_and_sequence_numbers() -> None:
    async def go() -> list[pb.Envelope]:
        up = MemoryUplink()
        s = Scheduler(up, fs=1000)
        for i, st in enumerate([RAW, SNIPPETS, FEATURES, SPIKES, TELEMETRY, SPIKES]):
            s.submit(packet(st, i * 10))
        task = asyncio.create_task(s.run())
        assert await s.drain(2.0)
        task.cancel()
        return decode(up.chunks)
    envs = [e for e in vrun(go()) if e.WhichOneof("payload") == "log"]
    assert [e.stream for e in envs] == [TELEMETRY, SPIKES, SPIKES, FEATURES, SNIPPETS, RAW]
    assert [e.seq for e in envs if e.stream == SPIKES] == [0, 1]


def test_outage_buffers_events_and_sheds_raw_with_accounting() -> None:
    async def go() -> list[pb.Envelope]:
        up = MemoryUplink()
        up.up = False
        s = Scheduler(up, fs=1000)
        for i in range(50):
            s.submit(packet(SPIKES, i * 10, items=3))
            s.submit(packet(FEATURES, i * 10, items=2))
            s.submit(packet(RAW, i * 10, items=40))
        up.up = True
        task = asyncio.create_task(s.run())
        s.request_report()
        assert await s.drain(2.0)
        await asyncio.sleep(0.3)
        s.request_report()
        assert await s.drain(2.0)
        task.cancel()
        return decode(up.chunks)
    envs = vrun(go())
    spikes = [e for e in envs if e.stream == SPIKES]
    assert len(spikes) == 50 and [e.sample_index for e in spikes] == sorted(
        e.sample_index for e in spikes)
    t = totals(envs)
    assert t[SPIKES].produced == t[SPIKES].sent == 150 and t[SPIKES].shed == 0
    assert t[RAW].produced == 2000 and t[RAW].shed == 2000
    ranges = [r for e in envs if e.WhichOneof("payload") == "shed" for r in e.shed.ranges]
    raw = [r for r in ranges if r.stream == RAW]
    assert len(raw) == 1 and raw[0].first_sample == 0 and raw[0].end_sample == 500
    assert raw[0].reason == pb.SHED_OUTAGE and raw[0].items == 2000


def test_budget_sheds_lowest_class_first() -> None:
    async def go() -> tuple[list[pb.Envelope], Scheduler]:
        up = MemoryUplink(rate_bps=200_000)
        s = Scheduler(up, fs=1000)
        task = asyncio.create_task(s.run())
        for i in range(100):                 # ~ 1 s of offered load at ~ 4× the link
            s.submit(packet(SPIKES, i * 10, size=100))
            s.submit(packet(SNIPPETS, i * 10, size=300))
            s.submit(packet(RAW, i * 10, size=600))
            await asyncio.sleep(0.01)
        assert await s.drain(5.0)
        await asyncio.sleep(0.3)
        s.request_report()
        assert await s.drain(2.0)
        task.cancel()
        return decode(up.chunks), s
    envs, _ = vrun(go())
    t = totals(envs)
    got = {st: sum(1 for e in envs if e.stream == st and e.WhichOneof("payload") == "log")
           for st in (SPIKES, SNIPPETS, RAW)}
    assert got[SPIKES] == 100 and t[SPIKES].shed == 0
    assert t[RAW].shed > 0
    assert t[RAW].shed >= t[SNIPPETS].shed
    for st in (SPIKES, SNIPPETS, RAW):
        assert got[st] + t[st].shed == t[st].produced == 100


def test_shed_reports_stay_small_and_complete_under_many_ranges() -> None:
    """Thousands of separate gaps (a long outage with a faulty implant link): every report
    packet fits the framing, counts stay exact, the final report comes last."""
    async def go() -> list[pb.Envelope]:
        up = MemoryUplink()
        up.up = False
        s = Scheduler(up, fs=1000)
        for i in range(3000):
            s.report_gap(i * 10, i * 10 + 5, pb.SHED_IMPLANT_GAP, 5)
            s.account_at_source(RAW, 5 * 300, i * 10, i * 10 + 5, pb.SHED_OUTAGE,
                                tuple(range(i % 7, 300)))
        up.up = True
        s.report_interval = 0.0
        task = asyncio.create_task(s.run())
        s.request_report(final=True)
        assert await s.drain(5.0)
        task.cancel()
        return decode(up.chunks)
    envs = vrun(go())
    reports = [e.shed for e in envs if e.WhichOneof("payload") == "shed"]
    assert len(reports) > 1 and reports[-1].final and not any(r.final for r in reports[:-1])
    ranges = [r for rep in reports for r in rep.ranges]
    assert sum(r.items for r in ranges if r.stream == RAW) == 3000 * 1500
    assert sum(r.items for r in ranges if r.stream == pb.STREAM_UNSPECIFIED) == 3000 * 5
    assert {t.stream: t.shed for t in reports[-1].totals}[RAW] == 3000 * 1500


def test_token_bucket_caps_rate_and_schedule_parses() -> None:
    import time

    import pytest

    from hub.uplink.tcp import TokenBucket, UplinkError, parse_schedule

    async def go() -> float:
        b = TokenBucket(400_000, burst_bytes=500)
        t = time.monotonic()
        for _ in range(100):
            await b.take(250)                 # 25 kB at 50 kB/s, 500 B of burst
        return time.monotonic() - t
    assert vrun(go()) == pytest.approx(24_500 / 50_000, rel=1e-3)   # simulated seconds
    assert parse_schedule("20:outage=5, 10:rate=260e3") == [(10.0, "rate", 260e3),
                                                            (20.0, "outage", 5.0)]
    with pytest.raises(UplinkError, match="unknown action"):
        parse_schedule("5:drop=1")


class StallingUplink(MemoryUplink):
    """Connected, but send() blocks while ``stalled`` (a radio outage before the supervision
    timeout: the controller holds its buffers and returns no credits)."""

    def __init__(self) -> None:
        super().__init__(rate_bps=1_000_000.0)
        self.stalled = asyncio.Event()

    async def send(self, chunk: bytes) -> bool:
        while self.stalled.is_set():
            await asyncio.sleep(0.01)
        return await super().send(chunk)


def test_budget_survives_a_stall_and_resets_on_reconnect() -> None:
    async def main() -> tuple[float, float, float]:
        up = StallingUplink()
        s = Scheduler(up)
        task = asyncio.create_task(s.run())
        up.stalled.set()
        for i in range(3):
            s.submit(packet(SPIKES, i * 10))
        await asyncio.sleep(1.6)               # one send blocked for 1.6 s: nothing delivered
        up.stalled.clear()
        await asyncio.sleep(1.2)               # it returns; the next windows carry ~no bytes
        after_stall = s.budget_bps
        up.up = False
        await asyncio.sleep(0.6)
        s.budget_bps = 1000.0                  # as if it had collapsed during the outage
        up.up = True
        await asyncio.sleep(0.7)
        after_reconnect = s.budget_bps
        task.cancel()
        return after_stall, after_reconnect, up.rate or 0.0

    after_stall, after_reconnect, nominal = vrun(main())
    assert after_stall >= 0.9 * nominal, "a stall must not be taken for the link's capacity"
    assert after_reconnect >= 0.9 * nominal, "a new connection restarts from the nominal rate"


class EventUplink(MemoryUplink):
    """A link that takes chunks per event: free slots and the time to the next event."""

    def __init__(self) -> None:
        super().__init__()
        self.slots = 5
        self.next_s: float | None = 0.006

    def send_slots(self) -> int | None:
        return self.slots

    def next_event_s(self) -> float | None:
        return self.next_s


def test_lower_classes_leave_reserved_slots_until_just_before_the_event() -> None:
    """Late binding + pacing: snippets and raw fill a connection event only up to the
    reserve; the reserved slots wait for events and feature bins until fill_guard_s before
    the event; an urgent packet is sent at once."""
    up = EventUplink()
    sch = Scheduler(up)
    guard = sch.cfg.fill_guard_s
    sch.submit(packet(SNIPPETS, 0))
    assert sch._send_window() == 0.0                     # 5 free > reserve 2: fill
    up.slots = sch.cfg.reserve_slots
    assert abs(sch._send_window() - (0.006 - guard)) < 1e-9   # hold the reserve
    up.next_s = guard / 2
    assert sch._send_window() == 0.0                     # just before the event: fill
    up.next_s = 0.006
    sch.submit(packet(SPIKES, 10))
    assert sch._send_window() == 0.0                     # urgent: at once
    up.slots = 0
    assert sch._send_window() > 0                        # full: wait for completions
    up.next_s = None
    up.slots = 1
    sch._pop(SPIKES)
    assert sch._send_window() == 0.0                     # no event phase known: never hold
