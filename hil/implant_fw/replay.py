"""Replay mode: a recording streamed to the implant in chunks, emitted at the implant's clock.

The feed (a host process: ``hil/mpy_runtime.py`` serves a recording) sends a 12-byte header,
``b"NKRP"``, u16 channels, u16 reserved, u32 sampling rate, then int16 samples, sample-major,
little-endian, for as long as it likes. The firmware reads only while its ring of ``depth``
frames has room, so the feed is paced by the transport's own flow control (TCP window, USB
NAKs) — nothing is buffered beyond the ring. A frame that is due when the ring is empty is an
*underrun*: counted, and the frame is skipped with its counter (the hub sees a gap), because
the implant's clock does not wait for its data.
"""

import struct

_MAGIC = b"NKRP"
HEADER = 12


class FeedError(ValueError):
    pass


class ReplayFeed:
    """``take(samples) -> bool`` copies the next frame's samples (int16 items) from the ring."""

    def __init__(self, stream: "object", n_channels: int, spf: int, fs: int,
                 depth: int = 16) -> None:
        self.stream, self.c, self.spf, self.fs = stream, n_channels, spf, fs
        self.fbytes = 2 * n_channels * spf
        self.depth = depth
        self.ring = bytearray(self.fbytes * depth)
        self.mv = memoryview(self.ring)
        self.head = bytearray()
        self.header_ok = False
        self.w = 0                 # bytes written into the ring (monotonic)
        self.r = 0                 # bytes taken
        self.underruns = 0
        self.frames = 0
        self.ended = False

    def _header(self, data: bytes) -> bytes:
        self.head.extend(data)
        if len(self.head) < HEADER:
            return b""
        magic, c, _, fs = struct.unpack_from("<4sHHI", self.head, 0)
        if magic != _MAGIC or c != self.c or fs != self.fs:
            raise FeedError("feed header %r: want NKRP, %d channels at %d Hz"
                            % (bytes(self.head[:HEADER]), self.c, self.fs))
        self.header_ok = True
        rest = bytes(self.head[HEADER:])
        self.head = bytearray()
        return rest

    def pump(self) -> None:
        """Reads what the stream has, as far as the ring has room."""
        st = self.stream
        if not st.connect():       # type: ignore[attr-defined]
            return
        while self.w - self.r < len(self.ring):
            data = st.recv(len(self.ring) - (self.w - self.r))   # type: ignore[attr-defined]
            if not data:
                if st.sock is None:   # type: ignore[attr-defined]
                    self.ended = True
                return
            if not self.header_ok:
                data = self._header(data)
            self._put(data)

    def _put(self, data: bytes) -> None:
        size = len(self.ring)
        n = len(data)
        if self.w - self.r + n > size:
            raise FeedError("feed overran the ring")
        pos = self.w % size
        first = min(n, size - pos)
        self.mv[pos:pos + first] = data[:first]
        if first < n:
            self.mv[0:n - first] = data[first:]
        self.w += n

    def take(self, samples: memoryview) -> bool:
        """``samples``: the frame's samples as bytes (FrameBuf.samples_b)."""
        if self.w - self.r < self.fbytes:
            self.underruns += 1
            return False
        pos = self.r % len(self.ring)       # frames never straddle the ring's end
        samples[:] = self.mv[pos:pos + self.fbytes]
        self.r += self.fbytes
        self.frames += 1
        return True
