"""Host side of the implant emulator's control messages (format: hil/implant_fw/control.py).

The decoding helper's closed loop drives the MicroPython implant with these: start a
:class:`ControlServer`, give its ``address`` to the firmware as ``"control"`` (``--fw-json
'{"control": "tcp:127.0.0.1:PORT"}'``), then ``velocity(vx, vy)`` — the intended 2-D velocity in
per-mille of full speed (±1000); the units' firing rates follow from the implant's next frame
(≤ 1 ms at 30 kHz), and the firmware logs ``{"ev": "vel", "seq": …, "counter": …}`` with the
frame at which they did. ``set(name, value)`` changes a fault or the clock at run time,
``reboot(boot_ms)`` and ``stop()`` end or restart the implant.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib

MAGIC = b"\xc5\x3c"
VELOCITY, SET, REBOOT, STOP = 1, 2, 3, 4
#: SET parameters: name → (id, scale from the natural unit to the integer on the wire)
PARAMS: dict[str, tuple[int, float]] = {
    "clock_ppm": (1, 1000.0), "wander_ppm": (2, 1000.0), "drop": (3, 1e6),
    "corrupt": (4, 1e6), "junk": (5, 1e6), "jitter_us": (6, 1.0), "stall_ms": (7, 1.0)}


def encode(typ: int, payload: bytes = b"") -> bytes:
    """One control message."""
    if len(payload) > 32:
        raise ValueError("control payload > 32 bytes")
    body = bytes([typ, len(payload)]) + payload
    return MAGIC + body + struct.pack("<I", zlib.crc32(body))


def encode_velocity(vx: int, vy: int, seq: int = 0) -> bytes:
    """Intended velocity, per-mille of full speed (clamped to ±1000 by the implant)."""
    return encode(VELOCITY, struct.pack("<hhI", max(-32768, min(32767, vx)),
                                        max(-32768, min(32767, vy)), seq & 0xFFFFFFFF))


def encode_set(name: str, value: float) -> bytes:
    if name not in PARAMS:
        raise ValueError(f"unknown implant parameter {name!r} (one of {', '.join(PARAMS)})")
    pid, scale = PARAMS[name]
    return encode(SET, struct.pack("<Bi", pid, round(value * scale)))


class ControlServer:
    """Listens on 127.0.0.1 (ephemeral port) for the firmware's control connection."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp:127.0.0.1:{self.srv.getsockname()[1]}"
        self.conn: socket.socket | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            if self.conn is not None:
                self.conn.close()       # the implant rebooted and came back
            self.conn = conn
            self._connected.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def send(self, msg: bytes) -> bool:
        """False when no implant is connected (the message is not queued)."""
        if self.conn is None:
            return False
        try:
            self.conn.sendall(msg)
            return True
        except OSError:
            self.conn = None
            return False

    def velocity(self, vx: int, vy: int, seq: int = 0) -> bool:
        return self.send(encode_velocity(vx, vy, seq))

    def set(self, name: str, value: float) -> bool:
        return self.send(encode_set(name, value))

    def reboot(self, boot_ms: int = 300) -> bool:
        return self.send(encode(REBOOT, struct.pack("<H", boot_ms)))

    def stop(self) -> bool:
        return self.send(encode(STOP))

    def garbage(self, data: bytes) -> bool:
        """Raw bytes (tests: the implant must skip and count them)."""
        return self.send(data)

    def close(self) -> None:
        self.srv.close()
        if self.conn is not None:
            self.conn.close()
