"""A crash-safe, append-only log of everything a recording received (``hubctl record
--packets-out``/``--nwb``), and a reader that tolerates a truncated or damaged file.

The log holds the link's chunks exactly as they arrived, each with the host's receive time, so
``hubctl decode`` can rebuild the session (NWB) with the same receiver, time-sync fit and
accounting as a live run. Layout (little-endian)::

    file header   8 s   magic b"IHUBPLOG"
                  2 u16 format version (1)
                  2 u16 reserved (0)
                  4 u32 n = length of the JSON that follows
                  n     JSON: created_unix_ns, created_monotonic_ns, tool version, link, …
    record        1 u8  kind (Kind: CHUNK, CONNECT, DISCONNECT, COMMAND, NOTE, END)
                  1 u8  link (Link: 0 unknown, 1 TCP, 2 BLE)
                  4 u32 payload length (≤ MAX_PAYLOAD)
                  8 i64 host time, ns (time.monotonic_ns() at receive)
                  …     payload (CHUNK: the chunk; COMMAND: a serialized Command; others: JSON)
                  4 u32 CRC-32 over the record header and payload

Crash safety: records are appended through a buffer that is handed to the OS at least every
``flush_s`` (default 0.25 s, on each write and on :meth:`PacketLogWriter.tick`), so a SIGKILL of
the recorder loses at most that much; the OS keeps what it was given. ``close`` also fsyncs.
The reader stops cleanly at a truncated tail and skips a damaged record by searching for the
next one whose CRC holds; both are counted (:class:`ReadStats`), never raised.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

MAGIC = b"IHUBPLOG"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sHHI")
RECORD_HEADER = struct.Struct("<BBIq")
CRC = struct.Struct("<I")
MAX_PAYLOAD = 1 << 20              # a chunk is ≤ 64 KiB; anything longer is damage
MAX_META = 1 << 20


class Kind(enum.IntEnum):
    CHUNK = 1          # hub → host chunk (hub.wire.framing), as received
    CONNECT = 2        # a new connection to the hub: the reassembler starts over (TCP)
    DISCONNECT = 3     # the connection was lost or closed
    COMMAND = 4        # host → hub: a serialized pb.Command, when it was sent
    NOTE = 5           # JSON: anything the recorder wants kept (settings, errors)
    END = 6            # JSON: the recorder closed the log cleanly


class Link(enum.IntEnum):
    UNKNOWN = 0
    TCP = 1
    BLE = 2


class PacketLogError(ValueError):
    """The file is not a packet log (wrong magic, unknown version, unreadable header)."""


@dataclass(frozen=True)
class Record:
    kind: Kind
    link: Link
    t_ns: int
    payload: bytes
    offset: int            # byte offset of the record in the file

    def json(self) -> dict[str, Any]:
        """The payload of a JSON record (CONNECT, DISCONNECT, NOTE, END); {} if unreadable."""
        try:
            d = json.loads(self.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return d if isinstance(d, dict) else {}


# ---------------------------------------------------------------- writing
class PacketLogWriter:
    """Appends records; hands them to the OS at least every ``flush_s`` seconds."""

    def __init__(self, path: Path, meta: dict[str, Any] | None = None, *,
                 link: Link = Link.UNKNOWN, flush_s: float = 0.25) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.link = link
        self.flush_s = flush_s
        self.records = 0
        self.bytes = 0
        head = {"created_unix_ns": time.time_ns(), "created_monotonic_ns": time.monotonic_ns(),
                "format": "implant-hub packet log", "link": link.name.lower(), **(meta or {})}
        blob = json.dumps(head).encode()
        self._f: IO[bytes] | None = self.path.open("wb")
        self._f.write(FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(blob)) + blob)
        self._f.flush()
        self._last_flush = time.monotonic()
        self._dirty = False

    @property
    def closed(self) -> bool:
        return self._f is None

    def write(self, kind: Kind, payload: bytes, t_ns: int | None = None,
              link: Link | None = None) -> None:
        """One record (``t_ns`` defaults to now, ``link`` to the writer's)."""
        if self._f is None:
            raise ValueError(f"{self.path}: packet log already closed")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        t = time.monotonic_ns() if t_ns is None else t_ns
        head = RECORD_HEADER.pack(int(kind), int(self.link if link is None else link),
                                  len(payload), t)
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._f.write(head + payload + CRC.pack(crc))
        self.records += 1
        self.bytes += len(head) + len(payload) + CRC.size
        self._dirty = True
        self.tick()

    def chunk(self, chunk: bytes, t_ns: int | None = None) -> None:
        """A chunk as received from the hub."""
        self.write(Kind.CHUNK, chunk, t_ns)

    def event(self, kind: Kind, info: dict[str, Any] | None = None,
              t_ns: int | None = None) -> None:
        """A JSON record (CONNECT, DISCONNECT, NOTE, END)."""
        self.write(kind, json.dumps(info or {}).encode(), t_ns)

    def command(self, serialized: bytes, t_ns: int | None = None) -> None:
        """A command the host sent (serialized pb.Command)."""
        self.write(Kind.COMMAND, serialized, t_ns)

    def tick(self) -> None:
        """Hands buffered records to the OS if the last hand-over is ``flush_s`` old; call it
        periodically so a quiet link loses nothing either."""
        if self._f is None or not self._dirty:
            return
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            self._f.flush()
            self._last_flush = now
            self._dirty = False

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Writes the END record (with ``summary``), flushes and fsyncs. Idempotent."""
        if self._f is None:
            return
        self.event(Kind.END, summary or {})
        f, self._f = self._f, None
        f.flush()
        try:
            os.fsync(f.fileno())
        except OSError as e:          # e.g. a pipe or a file system without fsync
            log.debug("fsync %s: %s", self.path, e)
        f.close()

    def __enter__(self) -> PacketLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- reading
@dataclass
class ReadStats:
    records: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    corrupt_records: int = 0       # damaged records skipped (CRC or header)
    skipped_bytes: int = 0         # bytes passed over while resynchronising
    truncated_tail_bytes: int = 0  # an incomplete last record (the recorder was killed)
    clean_end: bool = False        # an END record was read
    first_t_ns: int | None = None
    last_t_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _valid_header(kind: int, link: int, length: int) -> bool:
    return kind in Kind._value2member_map_ and link in Link._value2member_map_ and \
        length <= MAX_PAYLOAD


class PacketLogReader:
    """Iterates the records of a packet log; ``meta`` is the file header's JSON."""

    def __init__(self, path: Path, block_size: int = 1 << 20) -> None:
        self.path = Path(path)
        self.block_size = block_size
        self.stats = ReadStats()
        with self.path.open("rb") as f:
            head = f.read(FILE_HEADER.size)
            if len(head) < FILE_HEADER.size:
                raise PacketLogError(f"{self.path}: too short for a packet log "
                                     f"({len(head)} bytes)")
            magic, version, _, n = FILE_HEADER.unpack(head)
            if magic != MAGIC:
                raise PacketLogError(f"{self.path}: not a packet log (magic {magic!r}; logs "
                                     "from before the packet-log format are not readable)")
            if version != FORMAT_VERSION:
                raise PacketLogError(f"{self.path}: packet log version {version}, this reader "
                                     f"knows {FORMAT_VERSION}")
            if n > MAX_META:
                raise PacketLogError(f"{self.path}: header JSON of {n} bytes")
            blob = f.read(n)
        try:
            meta = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PacketLogError(f"{self.path}: unreadable header JSON ({e})") from e
        if len(blob) < n or not isinstance(meta, dict):
            raise PacketLogError(f"{self.path}: truncated or malformed header")
        self.meta: dict[str, Any] = meta
        self.data_offset = FILE_HEADER.size + n

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        """Every intact record in file order (statistics in ``stats``, reset per pass)."""
        self.stats = st = ReadStats()
        hs, cs = RECORD_HEADER.size, CRC.size
        with self.path.open("rb") as f:
            f.seek(self.data_offset)
            buf = b""
            base = self.data_offset          # file offset of buf[0]
            pos = 0
            eof = False
            resync = False

            def need(k: int) -> bool:
                """At least k bytes from pos in buf (reads more; False at end of file)."""
                nonlocal buf, base, pos, eof
                while len(buf) - pos < k and not eof:
                    more = f.read(max(self.block_size, k))
                    eof = not more
                    buf = buf[pos:] + more
                    base += pos
                    pos = 0
                return len(buf) - pos >= k

            while True:
                if not need(hs):
                    st.truncated_tail_bytes = len(buf) - pos
                    break
                kind, link, n, t = RECORD_HEADER.unpack_from(buf, pos)
                ok = _valid_header(kind, link, n)
                if ok and not need(hs + n + cs):
                    if not resync:
                        st.truncated_tail_bytes = len(buf) - pos
                        break
                    ok = False               # in a damaged stretch: this header may be noise
                if ok:
                    end = pos + hs + n
                    (crc,) = CRC.unpack_from(buf, end)
                    ok = zlib.crc32(buf[pos:end]) == crc
                if not ok:
                    if not resync:
                        st.corrupt_records += 1
                    resync = True
                    pos += 1
                    st.skipped_bytes += 1
                    continue
                resync = False
                rec = Record(Kind(kind), Link(link), t, bytes(buf[pos + hs:end]), base + pos)
                pos = end + cs
                st.records += 1
                st.by_kind[rec.kind.name] = st.by_kind.get(rec.kind.name, 0) + 1
                st.first_t_ns = t if st.first_t_ns is None else st.first_t_ns
                st.last_t_ns = t
                if rec.kind == Kind.END:
                    st.clean_end = True
                yield rec
        if st.truncated_tail_bytes:
            log.warning("%s: truncated last record (%d bytes): the recorder stopped mid-write",
                        self.path, st.truncated_tail_bytes)
        if st.corrupt_records:
            log.warning("%s: %d damaged record(s) skipped (%d bytes)", self.path,
                        st.corrupt_records, st.skipped_bytes)
