"""Implant link: frame format, resynchronising parser, gaps as explicit held-value blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.link import BlockAssembler, FrameParser, Gap, encode_frame
from hub.link.blocks import Block
from hub.link.frame import HEADER_SIZE


def frames(n: int, c: int = 4, spf: int = 5, start: int = 0) -> list[bytes]:
    rng = np.random.default_rng(1)
    return [encode_frame(start + i, rng.integers(-2000, 2000, (spf, c)).astype(np.int16), 30000)
            for i in range(n)]


def test_roundtrip_in_arbitrary_pieces() -> None:
    data = b"".join(frames(20))
    p = FrameParser()
    got = []
    for i in range(0, len(data), 7):
        got += p.feed(data[i:i + 7])
    assert [f.counter for f in got] == list(range(20))
    assert got[3].samples.shape == (5, 4) and got[3].sampling_rate == 30000
    assert p.stats.corrupt == 0 and p.stats.garbage_bytes == 0


def test_garbage_and_corruption_are_counted_and_skipped() -> None:
    fr = frames(6)
    bad = bytearray(fr[2])
    bad[HEADER_SIZE + 3] ^= 0xFF                     # sample corrupted: CRC fails
    data = b"\x00\xa5junk" + fr[0] + fr[1] + bytes(bad) + b"\xa5\x5a\x01" + fr[3] + fr[4]
    p = FrameParser()
    got = p.feed(data)
    assert [f.counter for f in got] == [0, 1, 3, 4]
    assert p.stats.corrupt >= 1 and p.stats.garbage_bytes > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 5))
def test_random_bytes_never_crash_and_stream_resumes(junk: bytes, where: int) -> None:
    fr = frames(6)
    data = b"".join(fr[:where]) + junk + b"".join(fr[where:])
    got = FrameParser().feed(data)
    counters = [f.counter for f in got]
    assert counters[-1] == 5 if where < 6 else True
    assert set(range(where)) <= set(counters) or where == 0


def test_block_assembler_fills_missing_frames_and_reports_gap() -> None:
    p = FrameParser()
    fr = frames(10, spf=5)
    got = p.feed(b"".join(fr[:3] + fr[5:]))           # frames 3 and 4 missing
    asm = BlockAssembler(block_samples=10)
    out: list[Gap | Block] = []
    for f in got:
        out += asm.push(f)
    gaps = [o for o in out if isinstance(o, Gap)]
    blocks = [o for o in out if isinstance(o, Block)]
    assert gaps == [Gap(15, 25, 2, True)]
    assert [b.first_sample for b in blocks] == [0, 10, 20, 30, 40]
    held = np.concatenate([b.samples for b in blocks])[15:25]
    assert (held == got[2].samples[-1]).all()
    assert asm.missing_frames == 2


def test_sample_clock_follows_frame_counter() -> None:
    asm = BlockAssembler(block_samples=5)
    out = []
    for f in FrameParser().feed(b"".join(frames(3, spf=5, start=100))):
        out += asm.push(f)
    assert [o.first_sample for o in out if isinstance(o, Block)] == [500, 505, 510]


def test_long_gap_restarts_stream() -> None:
    asm = BlockAssembler(block_samples=5, max_fill=10)
    fs = FrameParser().feed(frames(1, spf=5)[0] + frames(1, spf=5, start=50)[0])
    out = asm.push(fs[0]) + asm.push(fs[1])
    gap = next(o for o in out if isinstance(o, Gap))
    assert not gap.filled and gap.start == 5 and gap.end == 250
    assert isinstance(out[-1], Block) and out[-1].first_sample == 250


def test_encode_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="int16"):
        encode_frame(0, np.zeros((2, 2), np.float32), 1000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampling_rate"):
        encode_frame(0, np.zeros((2, 2), np.int16), 0)


def test_transports_unix_and_pty(tmp_path: Path) -> None:
    """The hub reads frames from a unix socket and from a pseudo-terminal."""
    import asyncio
    import os
    import socket

    from hub.link.transport import LinkTransport

    data = b"".join(frames(5))

    async def via_unix() -> list[int]:
        got: list[int] = []
        p = FrameParser()
        t = LinkTransport(f"unix:{tmp_path / 'implant.sock'}")
        await t.start(lambda b: got.extend(f.counter for f in p.feed(b)))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(tmp_path / "implant.sock"))
        s.sendall(data)
        s.close()
        for _ in range(6000):          # hang guard: 60 s
            if len(got) == 5:
                break
            await asyncio.sleep(0.01)
        await t.stop()
        return got

    async def via_pty() -> list[int]:
        got: list[int] = []
        p = FrameParser()
        master, slave = os.openpty()
        t = LinkTransport(f"pty:{os.ttyname(slave)}")
        await t.start(lambda b: got.extend(f.counter for f in p.feed(b)))
        os.write(master, data)
        for _ in range(6000):          # hang guard: 60 s
            if len(got) == 5:
                break
            await asyncio.sleep(0.01)
        await t.stop()
        os.close(master)
        os.close(slave)
        return got

    assert asyncio.run(via_unix()) == list(range(5))
    assert asyncio.run(via_pty()) == list(range(5))
