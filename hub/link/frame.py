"""Implant-link frames and an incremental, resynchronising parser.

Frame layout (little-endian)::

    offset  size  field
    0       2     sync            0xA5 0x5A
    2       1     version         1
    3       1     flags           reserved, 0
    4       4     frame counter   u32, +1 per frame, wraps
    8       2     n_channels      1..1024
    10      2     n_samples       samples per channel in this frame, 1..4096
    12      4     sampling rate   Hz (u32)
    16      2·C·N samples         int16, sample-major (N rows of C channels)
    16+2CN  4     CRC-32          zlib.crc32 over bytes 2 .. 16+2CN (header after sync + samples)

The parser never raises on line garbage: it counts skipped bytes and corrupt frames (bad CRC or
impossible header) and resynchronises on the next sync marker. Once a frame has passed its CRC,
a header announcing a frame more than 4× larger is treated as damage rather than waited for —
unless ``UNLOCK_AFTER`` such headers, all alike and with no good frame between, say the implant
really switched to bigger frames: then the next one is waited for (a format change costs those
frames, counted corrupt, never the stream). Missing frames show as counter gaps, handled by
:class:`hub.link.blocks.BlockAssembler`.

Every byte fed is accounted exactly once (the property tests check it):
``bytes = bytes of good frames + garbage_bytes + corrupt + buffered`` — a corrupt event consumes
the one byte where a false frame started. ``close()`` ends a connection: it parses what is
complete, counts a frame cut off by the disconnect as corrupt, and forgets the format lock.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SYNC = b"\xa5\x5a"
VERSION = 1
HEADER = struct.Struct("<2sBBIHHI")
HEADER_SIZE = HEADER.size            # 16
CRC_SIZE = 4
MAX_CHANNELS = 1024
MAX_SAMPLES = 4096
MAX_RATE_HZ = 200_000
#: The largest frame a valid header can announce.
MAX_FRAME_SIZE = HEADER_SIZE + 2 * MAX_CHANNELS * MAX_SAMPLES + CRC_SIZE
#: Oversize headers (all alike, no good frame between) that unlock the frame-size guard.
UNLOCK_AFTER = 3


class LinkError(ValueError):
    """Bad implant-link input that cannot be resynchronised past (e.g. a bad address)."""


@dataclass(frozen=True)
class Frame:
    counter: int
    sampling_rate: int
    samples: npt.NDArray[np.int16]     # (n_samples, n_channels)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])


@dataclass
class LinkStats:
    bytes: int = 0
    frames: int = 0
    corrupt: int = 0          # CRC mismatch, impossible header or cut-off frame after a sync
    garbage_bytes: int = 0    # bytes skipped while looking for sync
    frame_bytes: int = 0      # bytes of good frames


def encode_frame(counter: int, samples: npt.NDArray[np.int16], sampling_rate: int) -> bytes:
    """One frame (what the implant sends)."""
    if samples.ndim != 2 or samples.dtype != np.int16:
        raise ValueError("samples must be a 2-D int16 array (n_samples, n_channels)")
    n, c = samples.shape
    if not (1 <= c <= MAX_CHANNELS and 1 <= n <= MAX_SAMPLES):
        raise ValueError(f"frame of {n}×{c} samples: want 1–{MAX_SAMPLES} × 1–{MAX_CHANNELS}")
    if not 1 <= sampling_rate <= MAX_RATE_HZ:
        raise ValueError(f"sampling_rate={sampling_rate}: want 1–{MAX_RATE_HZ} Hz")
    head = HEADER.pack(SYNC, VERSION, 0, counter & 0xFFFFFFFF, c, n, sampling_rate)
    body = np.ascontiguousarray(samples, dtype="<i2").tobytes()
    crc = zlib.crc32(body, zlib.crc32(head[2:]))
    return head + body + crc.to_bytes(4, "little")


class FrameParser:
    """``feed(bytes) -> [Frame, ...]``; keeps partial frames between calls."""

    def __init__(self, max_buffer: int = 2 * MAX_FRAME_SIZE) -> None:
        self.stats = LinkStats()
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self._locked = 0        # size of the stream's frames once one passed its CRC
        self._oversize: tuple[bytes, int] = (b"", 0)   # (header, times seen in a row)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not complete yet."""
        return len(self._buf)

    def reset(self) -> None:
        """Drops a partial frame (counted as garbage) and the format lock."""
        self.stats.garbage_bytes += len(self._buf)
        self._buf.clear()
        self._locked = 0
        self._oversize = (b"", 0)

    def close(self) -> list[Frame]:
        """The connection ended: the frames still complete in the buffer; a frame cut off by
        the disconnect is counted corrupt; the rest is garbage; the format lock is forgotten."""
        out = self.feed(b"", final=True)
        self.reset()
        return out

    def feed(self, data: bytes, final: bool = False) -> list[Frame]:
        """The frames completed by ``data`` (``final``: no more bytes will come)."""
        st = self.stats
        st.bytes += len(data)
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos = 0
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                # keep a trailing 0xA5 that may start the next marker
                keep = 1 if pos < len(buf) and buf[-1] == SYNC[0] and not final else 0
                st.garbage_bytes += len(buf) - pos - keep
                pos = len(buf) - keep
                break
            st.garbage_bytes += i - pos
            pos = i
            if len(buf) - pos < HEADER_SIZE:
                if final:               # a header cut off by the disconnect
                    st.corrupt += 1
                    pos += 1
                    continue
                break
            _, ver, _, counter, c, n, rate = HEADER.unpack_from(buf, pos)
            if ver != VERSION or not (1 <= c <= MAX_CHANNELS and 1 <= n <= MAX_SAMPLES
                                      and 1 <= rate <= MAX_RATE_HZ):
                st.corrupt += 1
                pos += 1
                continue
            size = HEADER_SIZE + 2 * c * n + CRC_SIZE
            if self._locked and size > 4 * self._locked and not self._unlock(buf, pos):
                # a header claiming a much bigger frame than the stream's is damage: do not
                # stall the stream waiting for megabytes that will fail the CRC anyway
                st.corrupt += 1
                pos += 1
                continue
            if len(buf) - pos < size:
                if final:               # a frame cut off by the disconnect
                    st.corrupt += 1
                    pos += 1
                    continue
                break
            end = pos + size
            crc = int.from_bytes(buf[end - 4:end], "little")
            if zlib.crc32(memoryview(buf)[pos + 2:end - 4]) != crc:
                st.corrupt += 1
                pos += 1
                continue
            samples = np.frombuffer(bytes(buf[pos + HEADER_SIZE:end - 4]),
                                    dtype="<i2").reshape(n, c).astype(np.int16, copy=False)
            out.append(Frame(counter, rate, samples))
            st.frames += 1
            st.frame_bytes += size
            self._locked = size
            self._oversize = (b"", 0)
            pos = end
        del buf[:pos]
        if len(buf) > self._max_buffer:   # cannot happen with valid headers; stay bounded
            st.garbage_bytes += len(buf)
            buf.clear()
        return out

    def _unlock(self, buf: bytearray, pos: int) -> bool:
        """True when this oversize header is the ``UNLOCK_AFTER``-th alike in a row with no
        good frame between: the implant switched to bigger frames, so wait for this one.
        Headers are compared without the counter (bytes 4–8)."""
        key = bytes(buf[pos + 2:pos + 4] + buf[pos + 8:pos + HEADER_SIZE])
        seen, n = self._oversize
        n = n + 1 if key == seen else 1
        if n >= UNLOCK_AFTER:
            self._locked = 0
            self._oversize = (b"", 0)
            return True
        self._oversize = (key, n)
        return False
