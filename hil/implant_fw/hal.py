"""The firmware's tiny hardware abstraction: byte streams opened by an address string.

- ``tcp:HOST:PORT`` / ``unix:PATH`` — a client socket that reconnects (unix port)
- ``stdout`` — file descriptor 1 (a PTY on the unix port; the REPL's USB-CDC on a board)
- ``uart:ID:BAUD`` — a hardware UART (``machine.UART``)
- ``usbcdc`` — the board's USB-CDC (``sys.stdout``/``sys.stdin`` buffers)

Every stream has ``connect() -> bool`` (cheap, rate-limited retries), ``send(buf) -> bool``
(False: the link is down, the frame is lost — the implant's clock never waits for a link),
``recv() -> bytes`` (whatever arrived, never blocking) and ``close()``.
"""

import sys
import time

try:
    import select
except ImportError:
    select = None              # type: ignore[assignment]

try:
    from typing import Any
except ImportError:            # MicroPython: annotations are not evaluated
    pass


def _cpython_ticks_us() -> int:
    return time.monotonic_ns() // 1000


# time.ticks_* on MicroPython (CLOCK_MONOTONIC on the unix port); CPython only in tests
ticks_us = getattr(time, "ticks_us", _cpython_ticks_us)
ticks_ms = getattr(time, "ticks_ms", lambda: _cpython_ticks_us() // 1000)
ticks_diff = getattr(time, "ticks_diff", lambda a, b: a - b)
ticks_add = getattr(time, "ticks_add", lambda a, b: a + b)
sleep_us = getattr(time, "sleep_us", lambda us: time.sleep(us / 1e6))


class Stream:
    retry_ms = 200

    def __init__(self) -> None:
        self.connects = 0
        self._next_try = 0

    def connect(self) -> bool:
        return True

    def send(self, buf: memoryview) -> bool:
        raise NotImplementedError

    def recv(self, max_bytes: int = 4096) -> bytes:
        return b""

    def close(self) -> None:
        pass


class SocketStream(Stream):
    """TCP or unix-socket client; reconnects after a failure."""

    def __init__(self, spec: str, timeout_s: float = 2.0) -> None:
        super().__init__()
        import socket
        self.socket_mod = socket
        self.spec, self.timeout_s = spec, timeout_s
        self.sock: Any = None
        self.poll: Any = None

    def connect(self) -> bool:
        if self.sock is not None:
            return True
        now = ticks_ms()
        if ticks_diff(now, self._next_try) < 0:
            return False
        self._next_try = ticks_add(now, self.retry_ms)
        socket = self.socket_mod
        scheme, _, rest = self.spec.partition(":")
        try:
            if scheme == "tcp":
                host, _, port = rest.rpartition(":")
                addr = socket.getaddrinfo(host, int(port))[0][-1]
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            else:
                addr = rest
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout_s)
            s.connect(addr)
        except OSError:
            return False
        self.sock = s
        if select is not None:
            p = select.poll()
            p.register(s, select.POLLIN)
            self.poll = p
        self.connects += 1
        return True

    def send(self, buf: memoryview) -> bool:
        s = self.sock
        if s is None:
            return False
        try:
            s.write(buf)
            return True
        except OSError:
            self.close()
            return False

    def recv(self, max_bytes: int = 4096) -> bytes:
        s, p = self.sock, self.poll
        if s is None or p is None:
            return b""
        out = b""
        while len(out) < max_bytes and p.poll(0):
            try:
                d = s.recv(min(4096, max_bytes - len(out)))
            except OSError:
                d = b""
            if not d:              # the peer closed
                self.close()
                break
            out += d
        return out

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.poll = None


class StdioStream(Stream):
    """stdout for frames (a PTY on the unix port, USB-CDC on a board); stdin for control only
    after ``take_input()``, which disables the REPL's Ctrl-C (control payloads may contain
    0x03): three 0x03 in a row then stop the firmware (``stop_requested``)."""

    def __init__(self, raw_input: bool = False) -> None:
        super().__init__()
        self.out = sys.stdout.buffer
        self.inp = sys.stdin.buffer
        self.poll: Any = None
        self.stop_requested = False
        if raw_input and select is not None:
            import micropython  # type: ignore[import-not-found]
            micropython.kbd_intr(-1)
            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
            self.poll = p
        self.connects = 1

    def send(self, buf: memoryview) -> bool:
        try:
            self.out.write(buf)
            return True
        except OSError:
            return False

    def recv(self, max_bytes: int = 4096) -> bytes:
        p = self.poll
        out = b""
        while p is not None and len(out) < max_bytes and p.poll(0):
            out += self.inp.read(1)
        if b"\x03\x03\x03" in out:
            self.stop_requested = True
        return out


class UartStream(Stream):
    """``uart:ID:BAUD`` — a hardware UART with a transmit buffer of one second's frames."""

    def __init__(self, uart_id: int, baud: int, txbuf: int = 4096) -> None:
        super().__init__()
        import machine  # type: ignore[import-not-found]
        self.uart = machine.UART(uart_id, baudrate=baud, txbuf=txbuf, rxbuf=256)
        self.connects = 1

    def send(self, buf: memoryview) -> bool:
        return bool(self.uart.write(buf))

    def recv(self, max_bytes: int = 4096) -> bytes:
        n = min(self.uart.any(), max_bytes)
        return self.uart.read(n) if n else b""


def open_stream(spec: str) -> Stream:
    """The stream named by ``spec`` (see the module docstring)."""
    if spec.startswith(("tcp:", "unix:")):
        return SocketStream(spec)
    if spec in ("stdout", "usbcdc"):
        return StdioStream()
    if spec.startswith("uart:"):
        _, uid, baud = spec.split(":")
        return UartStream(int(uid), int(baud))
    raise ValueError("stream %r: want tcp:HOST:PORT, unix:PATH, stdout, usbcdc or uart:ID:BAUD"
                     % spec)


class Log:
    """JSON lines for the host (truth log, statistics): stderr on the unix port; nothing on a
    board whose only link carries frames (the statistics stay in RAM)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def line(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(text + "\n")
