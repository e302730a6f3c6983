"""Regression: link counters never go negative (hil-bci's telemetry stage once died with
``ValueError('Value out of range: -1')`` building ``Telemetry.link_garbage_bytes``).

The cause was in the implant-link parser: after the last complete frame of a read it kept a
trailing 0xA5 byte (a sync marker may start there) even when that byte was the frame's own
last CRC byte, i.e. already consumed, and counted ``len(buf) − pos − keep`` = −1 garbage
bytes. About one frame in 256 ends in 0xA5, so with 1 ms frames the total stood at −1 for the
millisecond until the next read, and a telemetry packet built then failed (the uint64 field
refuses −1; the stage restarted). Fixed in ``hub.link.frame`` by keeping the byte only when it
is past the last frame (``pos < len(buf)``); these tests pin it at the parser and at the
telemetry message."""

from __future__ import annotations

import numpy as np

from hub.link import FrameParser, encode_frame
from hub.wire import pb


def _frames_ending_in_sync_byte(n: int) -> list[bytes]:
    """``n`` consecutive frames whose last (CRC) byte is 0xA5, the first byte of SYNC."""
    rng = np.random.default_rng(7)
    out: list[bytes] = []
    while len(out) < n:
        f = encode_frame(len(out), rng.integers(-2000, 2000, (30, 4)).astype(np.int16), 30000)
        if f[-1] == 0xA5:
            out.append(f)
    return out


def test_a_read_ending_on_a_frame_whose_crc_ends_in_0xa5_counts_no_garbage() -> None:
    p = FrameParser()
    got = []
    for f in _frames_ending_in_sync_byte(3):          # each read is exactly one frame
        got += p.feed(f)
        assert p.stats.garbage_bytes == 0 and p.buffered == 0
    assert [f.counter for f in got] == [0, 1, 2]
    s = p.stats
    assert s.bytes == s.frame_bytes + s.garbage_bytes + s.corrupt + p.buffered


def test_link_stats_always_fit_the_telemetry_message() -> None:
    """Whatever the read boundaries, the parser's counters are valid uint64 telemetry."""
    data = b"".join(_frames_ending_in_sync_byte(4)) + b"\x00\xa5"
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = FrameParser()
        cuts = np.sort(rng.integers(0, len(data), 6))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            p.feed(data[a:b])
            s = p.stats
            pb.Telemetry(link_frames=s.frames, link_corrupt=s.corrupt, link_bytes=s.bytes,
                         link_garbage_bytes=s.garbage_bytes)
            assert s.bytes == s.frame_bytes + s.garbage_bytes + s.corrupt + p.buffered
