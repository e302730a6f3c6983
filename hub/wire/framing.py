"""Packets ⇄ notification-sized chunks (DESIGN §4).

Packets are written as records (``u16 LE length`` + bytes) into one byte stream that is cut into
chunks of at most ``payload_size`` bytes. Every chunk carries a small header::

    offset 0  u8   magic 0xB5
           1  u8   version (1)
           2  u16  chunk sequence number (LE, wraps)
           4  u16  offset of the first record that STARTS in this chunk's body, 0xFFFF if none
           6  ...  body: the continuation of the previous record, then whole/partial records

A lost or damaged chunk costs only the records it touched: the receiver sees the sequence gap,
drops the partial record, and resumes at the next chunk's first-record offset. The same framing
carries commands from the host to the hub (one chunk per CONTROL write).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

MAGIC = 0xB5
VERSION = 1
CHUNK_HEADER_SIZE = 6
DEFAULT_PAYLOAD_SIZE = 244          # BLE: ATT MTU 247 − 3
NO_RECORD = 0xFFFF
MAX_PACKET = 0xFFFF
_HDR = struct.Struct("<BBHH")


class FramingError(ValueError):
    """A packet cannot be framed (too large) or a chunk size is impossible."""


class Chunker:
    """Hub side: packets in, chunks of at most ``payload_size`` bytes out."""

    def __init__(self, payload_size: int = DEFAULT_PAYLOAD_SIZE) -> None:
        if not CHUNK_HEADER_SIZE + 3 <= payload_size <= 65535:
            raise FramingError(f"payload_size={payload_size}: must be {CHUNK_HEADER_SIZE + 3}"
                               "–65535 bytes")
        self.payload_size = payload_size
        self.body_size = payload_size - CHUNK_HEADER_SIZE
        self._buf = bytearray()
        self._base = 0                   # stream offset of _buf[0]
        self._starts: deque[int] = deque()
        self._seq = 0

    @property
    def pending(self) -> int:
        """Bytes waiting to be cut into chunks."""
        return len(self._buf)

    def push(self, packet: bytes) -> None:
        if len(packet) > MAX_PACKET:
            raise FramingError(f"packet of {len(packet)} bytes exceeds {MAX_PACKET}")
        self._starts.append(self._base + len(self._buf))
        self._buf += len(packet).to_bytes(2, "little")
        self._buf += packet

    def pop(self, flush: bool = False) -> bytes | None:
        """The next chunk: a full one, or (``flush``) whatever is pending; None if nothing."""
        n = min(len(self._buf), self.body_size)
        if n == 0 or (n < self.body_size and not flush):
            return None
        end = self._base + n
        first = NO_RECORD
        if self._starts and self._starts[0] < end:
            first = self._starts[0] - self._base
        while self._starts and self._starts[0] < end:
            self._starts.popleft()
        chunk = _HDR.pack(MAGIC, VERSION, self._seq, first) + bytes(self._buf[:n])
        del self._buf[:n]
        self._base = end
        self._seq = (self._seq + 1) & 0xFFFF
        return chunk

    def chunks(self, packet: bytes) -> list[bytes]:
        """Frames one packet on its own (commands): push + flush everything."""
        self.push(packet)
        out = []
        while (c := self.pop(flush=True)) is not None:
            out.append(c)
        return out


@dataclass
class ReassemblyStats:
    chunks: int = 0
    bytes: int = 0
    bad_chunks: int = 0          # wrong magic/version/too short
    lost_chunks: int = 0         # sequence gaps
    dropped_partial: int = 0     # records cut by a loss
    packets: int = 0
    skipped_bytes: int = 0       # body bytes discarded while resynchronising


class Reassembler:
    """Host side (and hub side for commands): ``feed(chunk) -> [packet, ...]``, incremental."""

    def __init__(self) -> None:
        self.stats = ReassemblyStats()
        self._buf = bytearray()
        self._synced = False
        self._expect: int | None = None

    def reset(self) -> None:
        """Forget partial state (a new connection)."""
        if self._buf:
            self.stats.dropped_partial += 1
        self._buf.clear()
        self._synced = False
        self._expect = None

    def feed(self, chunk: bytes) -> list[bytes]:
        st = self.stats
        st.chunks += 1
        st.bytes += len(chunk)
        if len(chunk) < CHUNK_HEADER_SIZE:
            st.bad_chunks += 1
            self._desync()
            return []
        magic, version, seq, first = _HDR.unpack_from(chunk)
        body = memoryview(chunk)[CHUNK_HEADER_SIZE:]
        if magic != MAGIC or version != VERSION or (first != NO_RECORD and first >= len(body)):
            st.bad_chunks += 1
            self._desync()
            return []
        if self._expect is not None and seq != self._expect:
            st.lost_chunks += (seq - self._expect) & 0xFFFF
            self._desync()
        self._expect = (seq + 1) & 0xFFFF
        if not self._synced:
            if first == NO_RECORD:
                st.skipped_bytes += len(body)
                return []
            st.skipped_bytes += first
            body = body[first:]
            self._synced = True
        self._buf += body
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 2:
            n = buf[pos] | (buf[pos + 1] << 8)
            if len(buf) - pos - 2 < n:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + n]))
            pos += 2 + n
        del buf[:pos]
        st.packets += len(out)
        return out

    def _desync(self) -> None:
        if self._buf:
            self.stats.dropped_partial += 1
        self._buf.clear()
        self._synced = False
