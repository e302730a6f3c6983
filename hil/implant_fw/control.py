"""Control messages to the implant emulator (host → implant), and their resynchronising parser.

Message layout (little-endian), the implant link's conventions::

    offset  size  field
    0       2     magic        0xC5 0x3C
    2       1     type         1 VELOCITY, 2 SET, 3 REBOOT, 4 STOP
    3       1     length L     payload bytes, 0..32
    4       L     payload
    4+L     4     CRC-32       zlib.crc32 over bytes 2 .. 4+L

Payloads:

- VELOCITY ``<hhI``: intended velocity vx, vy in per-mille of full speed (±1000) and a sequence
  number the implant logs with the frame at which the new rates took effect (closed-loop
  latency). Units' firing rates follow from the next frame on.
- SET ``<Bi``: parameter id and value — 1 clock error (ppb), 2 wander σ (ppb), 3 frame drop
  probability (per million), 4 corruption (per million), 5 junk (per million), 6 send jitter
  (µs, max), 7 one stall now (ms).
- REBOOT ``<H``: the implant reboots (link closed, boot time in ms, frame counter and clock
  phase restart at 0).
- STOP: the session ends cleanly (statistics logged, exit).

Bad input (wrong CRC, unknown type, oversize length) is skipped and counted; the parser
resynchronises on the next magic.
"""

import struct

from link import checksum

try:
    from micropython import const
except ImportError:            # CPython: only where a test says why
    const = int

VELOCITY = const(1)
SET = const(2)
REBOOT = const(3)
STOP = const(4)
MAX_PAYLOAD = const(32)
_MAGIC = b"\xc5\x3c"

# SET parameter ids
P_CLOCK_PPB = const(1)
P_WANDER_PPB = const(2)
P_DROP_PPM = const(3)
P_CORRUPT_PPM = const(4)
P_JUNK_PPM = const(5)
P_JITTER_US = const(6)
P_STALL_MS = const(7)


class ControlParser:
    """``feed(bytes) -> [(type, payload), …]``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.messages = 0
        self.bad = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf.extend(data)
        out = []
        pos = 0
        while True:
            i = buf.find(_MAGIC, pos)
            if i < 0:
                pos = len(buf) - 1 if buf and buf[-1] == 0xC5 else len(buf)
                break
            pos = i
            if len(buf) - pos < 4:
                break
            typ, n = buf[pos + 2], buf[pos + 3]
            if not (VELOCITY <= typ <= STOP) or n > MAX_PAYLOAD:
                self.bad += 1
                pos += 1
                continue
            end = pos + 4 + n + 4
            if len(buf) < end:
                # a junk header may claim more bytes than will come: a complete, valid
                # message after it proves it junk (else that message would wait for more)
                j = buf.find(_MAGIC, pos + 1)
                while j >= 0 and not _valid_at(buf, j):
                    j = buf.find(_MAGIC, j + 1)
                if j < 0:
                    break
                self.bad += 1
                pos = j
                continue
            if not _valid_at(buf, pos):
                self.bad += 1
                pos += 1
                continue
            out.append((typ, bytes(buf[pos + 4:end - 4])))
            self.messages += 1
            pos = end
        self.buf = buf[pos:]
        return out


def _valid_at(buf: bytearray, pos: int) -> bool:
    """A complete message with a good CRC starts at ``pos``."""
    if len(buf) - pos < 8:
        return False
    typ, n = buf[pos + 2], buf[pos + 3]
    end = pos + 8 + n
    if not (VELOCITY <= typ <= STOP) or n > MAX_PAYLOAD or len(buf) < end:
        return False
    crc = struct.unpack_from("<I", buf, end - 4)[0]
    return bool(checksum(memoryview(buf)[pos + 2:end - 4]) == crc)


def encode(typ: int, payload: bytes = b"") -> bytes:
    """One message (the host side has its own encoder: hil/implant_ctl.py)."""
    body = bytes([typ, len(payload)]) + payload
    return _MAGIC + body + struct.pack("<I", checksum(memoryview(body)))
