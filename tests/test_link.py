"""Implant link: frame format, resynchronising parser, gaps and format changes as explicit items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.link import BlockAssembler, FrameParser, Gap, encode_frame
from hub.link.blocks import Block, StreamStart
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


def test_missing_frames_are_a_gap_never_filled() -> None:
    """Frames 3 and 4 missing: the block before the gap is cut short, the gap is reported once
    with its exact range, the next block starts after it and is marked as a resume. The old
    assembler held the last value through short gaps (invented samples, sent as raw data)."""
    p = FrameParser()
    fr = frames(10, spf=5)
    got = p.feed(b"".join(fr[:3] + fr[5:]))           # frames 3 and 4 missing
    asm = BlockAssembler(block_samples=10)
    out: list[object] = []
    for f in got:
        out += asm.push(f)
    out += asm.flush()
    gaps = [o for o in out if isinstance(o, Gap)]
    blocks = [o for o in out if isinstance(o, Block)]
    assert gaps == [Gap(15, 25, 2, "missing")]
    assert [(b.first_sample, b.samples.shape[0], b.resume) for b in blocks] == [
        (0, 10, False), (10, 5, False), (25, 10, True), (35, 10, False), (45, 5, False)]
    sent = np.concatenate([f.samples for f in got])
    assert (np.concatenate([b.samples for b in blocks]) == sent).all()   # nothing invented
    assert asm.missing_frames == 2


def test_sample_clock_follows_frame_counter() -> None:
    asm = BlockAssembler(block_samples=5)
    out = []
    for f in FrameParser().feed(b"".join(frames(3, spf=5, start=100))):
        out += asm.push(f)
    assert [o.first_sample for o in out if isinstance(o, Block)] == [500, 505, 510]
    assert isinstance(out[0], StreamStart) and out[0].first_sample == 500 and not out[0].change


def test_long_gap_is_a_gap_and_a_far_jump_a_discontinuity() -> None:
    asm = BlockAssembler(block_samples=5, max_gap_s=1.0)      # 1 s = 6000 frames of 5
    fs = FrameParser().feed(frames(1, spf=5)[0] + frames(1, spf=5, start=50)[0]
                            + frames(1, spf=5, start=50 + 7000)[0])
    out = asm.push(fs[0]) + asm.push(fs[1]) + asm.push(fs[2])
    gaps = [o for o in out if isinstance(o, Gap)]
    assert gaps == [Gap(5, 250, 49, "missing"), Gap(255, 255, 0, "discontinuity")]
    assert [(o.first_sample, o.resume) for o in out if isinstance(o, Block)] == [
        (0, False), (250, True), (255, True)]
    assert asm.stats.discontinuities == 1


def test_format_change_is_a_new_stream_not_silent_loss() -> None:
    """An implant that comes back with 32 channels instead of 16: a reported new stream once
    two frames confirm it (the old assembler dropped every such frame, counted nowhere)."""
    old = [encode_frame(i, np.full((5, 16), i, np.int16), 30000) for i in range(3)]
    new = [encode_frame(i, np.full((5, 32), 7, np.int16), 30000) for i in range(4)]
    asm = BlockAssembler(block_samples=5)
    out: list[object] = []
    for f in FrameParser().feed(b"".join(old + new)):
        out += asm.push(f)
    starts = [o for o in out if isinstance(o, StreamStart)]
    assert [(s.first_sample, s.n_channels, s.change) for s in starts] == [(0, 16, False),
                                                                          (15, 32, True)]
    assert Gap(15, 15, 0, "format") in out
    blocks = [o for o in out if isinstance(o, Block)]
    assert [b.samples.shape for b in blocks] == [(5, 16)] * 3 + [(5, 32)] * 4
    assert asm.stats.format_changes == 1 and asm.stats.foreign == 0


def test_a_stray_frame_of_another_format_is_counted_not_a_new_stream() -> None:
    fr = frames(4, spf=5)
    stray = encode_frame(2, np.zeros((5, 8), np.int16), 30000)
    asm = BlockAssembler(block_samples=5)
    out: list[object] = []
    for f in FrameParser().feed(b"".join([*fr[:2], stray, *fr[2:]])):
        out += asm.push(f)
    assert [o.first_sample for o in out if isinstance(o, Block)] == [0, 5, 10, 15]
    assert asm.stats.foreign == 1 and asm.stats.format_changes == 0


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


def test_idle_squatter_on_the_implant_port_never_locks_the_implant_out() -> None:
    """An idle client connects to the implant port first; the implant connects next and sends
    5000 frames: every one arrives (the old transport refused the implant while the squatter
    held the port: 4967 of 5000 frames lost). The squatter is dropped after its deadline."""
    import asyncio
    import socket

    from hub.link.transport import LinkTransport

    data = b"".join(frames(5000, c=2, spf=2))

    async def go() -> tuple[int, int, int]:
        got: list[int] = []
        p = FrameParser()
        t = LinkTransport("tcp:127.0.0.1:0", auth_s=0.5)
        await t.start(lambda b: got.extend(f.counter for f in p.feed(b)))
        port = int(t.address.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        squatter = await loop.run_in_executor(None, socket.create_connection,
                                              ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        implant = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", port))
        await loop.run_in_executor(None, implant.sendall, data)
        for _ in range(1000):
            if len(got) == 5000 and t.squatters_dropped:
                break
            await asyncio.sleep(0.01)
        await t.stop()
        implant.close()
        squatter.close()
        return len(got), t.squatters_dropped, t.connections

    assert asyncio.run(asyncio.wait_for(go(), 60.0)) == (5000, 1, 1)


def test_a_reconnecting_implant_replaces_its_silent_old_connection() -> None:
    """The implant's old connection is half-open (silent, never closed); the implant reconnects
    and streams: the new connection takes the link once the old one has been silent for
    ``silence_s``, and nothing the new one sent is lost. A second implant that streams while
    the owner streams is refused."""
    import asyncio
    import socket

    from hub.link.transport import LinkTransport

    first, second = frames(50, c=2, spf=2), frames(50, c=2, spf=2, start=1000)

    async def go() -> tuple[list[int], int, int]:
        got: list[int] = []
        closed = [0]
        p = FrameParser()
        t = LinkTransport("tcp:127.0.0.1:0", auth_s=1.0, silence_s=0.2)
        await t.start(lambda b: got.extend(f.counter for f in p.feed(b)),
                      lambda: closed.__setitem__(0, closed[0] + 1))
        port = int(t.address.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", port))
        await loop.run_in_executor(None, a.sendall, b"".join(first))
        while len(got) < 50:
            await asyncio.sleep(0.01)
        b = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", port))
        await loop.run_in_executor(None, b.sendall, b"".join(second))
        while len(got) < 100:
            await asyncio.sleep(0.01)
        await t.stop()
        a.close()
        b.close()
        return got, t.connections, closed[0]

    got, connections, closed = asyncio.run(asyncio.wait_for(go(), 60.0))
    assert got == list(range(50)) + list(range(1000, 1050))
    assert connections == 2 and closed >= 1
