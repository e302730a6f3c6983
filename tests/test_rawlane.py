"""The scheduler's raw lane: channel selection, accounting, and only implant samples sent."""

from __future__ import annotations

import numpy as np

from hub.daemon.scheduler import RAW, Scheduler
from hub.link.blocks import Block
from hub.wire import pb
from tests.test_scheduler import MemoryUplink


def lane(codec: bool, channels: tuple[int, ...] | None = None) -> Scheduler:
    sch = Scheduler(MemoryUplink(rate_bps=10e6), fs=1000.0)
    sch.raw.set_stream(1000.0, 4)
    sch.raw.configure(channels, codec)
    return sch


def raw_ranges(sch: Scheduler) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(p.first_sample, p.end_sample, p.channels) for p in sch.classes[RAW].queue]


def test_filled_gap_samples_are_never_sent_as_raw() -> None:
    """Samples the assembler held to bridge an implant gap were sent as real raw data while
    the same range was reported as a gap: the raw lane cuts them out."""
    for codec in (False, True):
        sch = lane(codec, (0, 2))
        blk = Block(100, np.arange(40, dtype=np.int16).reshape(10, 4))
        sch.raw.note_filled(103, 106)
        sch.raw.push(blk, 0)
        got = sorted({(a, b) for a, b, _ in raw_ranges(sch)})
        assert got == [(100, 103), (106, 110)], codec
        assert sch.classes[RAW].produced == 2 * 7          # channel-samples of implant data
        sch.raw.push(Block(110, np.zeros((10, 4), np.int16)), 0)   # the range is passed
        assert (110, 120) in {(a, b) for a, b, _ in raw_ranges(sch)}


def test_int16_raw_carries_the_selected_channels_exactly() -> None:
    sch = lane(False, (3, 1))
    blk = Block(0, np.arange(40, dtype=np.int16).reshape(10, 4))
    sch.raw.push(blk, 0)
    (pkt,) = sch.classes[RAW].queue
    env = pb.Envelope.FromString(pkt.body)
    data = np.frombuffer(env.raw.data, "<i2").reshape(10, 2)
    assert list(env.raw.channels) == [3, 1] and (data == blk.samples[:, [3, 1]]).all()


def test_channels_that_do_not_fit_are_accounted_at_the_source() -> None:
    sch = lane(False)
    sch.budget_bps = 1000.0 * 16 * 1.04 * 2.5 / sch.cfg.headroom   # room for two channels
    sch.raw.push(Block(0, np.zeros((10, 4), np.int16)), 0)
    st = sch.classes[RAW]
    assert sch.raw_channels == 2 and st.produced == 40 and st.shed == 20
    (r,) = sch.pending_ranges
    assert list(r.channels) == [2, 3] and r.reason == pb.SHED_BUDGET and r.items == 20
