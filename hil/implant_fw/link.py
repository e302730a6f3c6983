"""Implant-link frames, built in place (MicroPython firmware; the format is hub/link/frame.py).

One preallocated ``array('h')`` holds a whole frame: the 16-byte header is items 0–7, the
samples (sample-major, N rows of C channels) items 8 … 8+N·C−1, the CRC-32 the last two items.
Everything the CRC covers starts at byte 2 = item 1, so the frame is built, checksummed and
sent without allocating. Little-endian targets only (every MicroPython board with USB is).
"""

import array
import binascii
import struct
import sys

try:
    from micropython import const
except ImportError:            # CPython: only where a test says why
    const = int

#: None on a port built without MICROPY_PY_BINASCII_CRC32 (then a slow table is used)
_HW_CRC = getattr(binascii, "crc32", None)

VERSION = const(1)
HEADER_ITEMS = const(8)        # 16 bytes
MAX_CHANNELS = const(1024)
MAX_SAMPLES = const(4096)
_HEAD = "<2sBBIHHI"
_SYNC = b"\xa5\x5a"

_TABLE: list[int] | None = None


def _crc32_sw(data: memoryview, crc: int = 0) -> int:
    """Table-driven CRC-32 (zlib polynomial) for ports without binascii.crc32: slow."""
    global _TABLE
    if _TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            t.append(c)
        _TABLE = t
    tab = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in bytes(data):
        c = tab[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def checksum(data: memoryview) -> int:
    """CRC-32 as zlib computes it."""
    if _HW_CRC is not None:
        return int(_HW_CRC(data)) & 0xFFFFFFFF
    return _crc32_sw(data)


def byte_view(arr: "array.array[int]", offset: int, nbytes: int) -> memoryview:
    """A byte view on an int16 array's memory (MicroPython's memoryview cannot cast)."""
    try:
        import uctypes
        return memoryview(uctypes.bytearray_at(uctypes.addressof(arr) + offset, nbytes))
    except ImportError:        # CPython
        return memoryview(arr).cast("B")[offset:offset + nbytes]


class FrameBuf:
    """A reusable frame of ``n_samples`` × ``n_channels`` at ``rate`` Hz."""

    def __init__(self, n_channels: int, n_samples: int, rate: int) -> None:
        if sys.byteorder != "little":
            raise ValueError("the implant link is little-endian; this target is not")
        if not (1 <= n_channels <= MAX_CHANNELS and 1 <= n_samples <= MAX_SAMPLES):
            raise ValueError("frame of %d x %d: want 1-%d x 1-%d"
                             % (n_samples, n_channels, MAX_SAMPLES, MAX_CHANNELS))
        self.c, self.n, self.rate = n_channels, n_samples, rate
        self.nc = n_channels * n_samples
        self.items = array.array("h", bytes(2 * (HEADER_ITEMS + self.nc + 2)))
        self.mv = memoryview(self.items)
        #: the samples, as int16 items (row r, channel ch at r*C + ch)
        self.samples = self.mv[HEADER_ITEMS:HEADER_ITEMS + self.nc]
        #: the same samples as bytes (replay copies recorded bytes straight in)
        self.samples_b = byte_view(self.items, 2 * HEADER_ITEMS, 2 * self.nc)
        self.nbytes = 2 * (HEADER_ITEMS + self.nc + 2)
        self._crc_at = 2 * (HEADER_ITEMS + self.nc)

    def seal(self, counter: int) -> memoryview:
        """Writes the header for ``counter`` and the CRC; returns the frame's bytes."""
        items = self.items
        struct.pack_into(_HEAD, items, 0, _SYNC, VERSION, 0, counter & 0xFFFFFFFF, self.c,
                         self.n, self.rate)
        crc = checksum(self.mv[1:HEADER_ITEMS + self.nc])
        struct.pack_into("<I", items, self._crc_at, crc)
        return self.mv
