"""Byte streams from the implant, opened by an address string (Bumble-style schemes):

- ``tcp:HOST:PORT``  the hub listens; one implant connection at a time (port 0: ephemeral)
- ``unix:PATH``      the hub listens on a unix socket
- ``serial:DEVICE[,BAUD]`` / ``pty:DEVICE``  a serial port or pseudo-terminal, raw mode

``LinkTransport.start(on_data, on_disconnect)`` delivers bytes until ``stop``; connections may
come and go.

Sockets: who owns the link. Every new connection is a *candidate*: its bytes are held (at most
``MAX_CANDIDATE_BYTES``) and checked by a parser of its own. A candidate that sends no valid
frame within ``auth_s`` is dropped (an idle client squatting the port costs nothing). One that
does takes the link when there is no owner or the owner has been silent for ``silence_s`` (an
implant that reconnected, a hung connection): the old owner is closed, ``on_disconnect`` runs,
and the candidate's held bytes are delivered first, so nothing it sent is lost. While the owner
streams, a second valid implant is refused after ``auth_s``. Never does an unproven connection
displace the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.link.frame import FrameParser, LinkError

log = logging.getLogger(__name__)
MAX_CANDIDATE_BYTES = 1 << 20
DataHandler = Callable[[bytes], None]
_BAUDS = {b: getattr(termios, f"B{b}") for b in (9600, 115200, 230400, 460800, 921600,
                                                 1000000, 2000000, 3000000, 4000000)
          if hasattr(termios, f"B{b}")}


class _Conn:
    """One accepted socket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.name = str(writer.get_extra_info("peername") or "unix peer")
        self.probe = FrameParser()
        self.held = bytearray()
        self.proven = False
        self.last_rx = time.monotonic()

    def abort(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.transport.abort()


class LinkTransport:
    """Opens the implant link named by ``spec`` and feeds everything it reads to a handler."""

    def __init__(self, spec: str, auth_s: float = 2.0, silence_s: float = 0.5) -> None:
        scheme, _, rest = spec.partition(":")
        if scheme not in ("tcp", "unix", "serial", "pty") or not rest:
            raise LinkError(f"implant link {spec!r}: want tcp:HOST:PORT, unix:PATH, "
                            "serial:DEVICE[,BAUD] or pty:DEVICE")
        self.spec, self.scheme, self.rest = spec, scheme, rest
        self.auth_s, self.silence_s = auth_s, silence_s
        self.address: str = spec
        self.connections = 0            # connections that took the link
        self.squatters_dropped = 0      # no valid frame within auth_s
        self.refused = 0                # valid, but the owner was streaming
        self.held_bytes_dropped = 0     # candidate bytes beyond MAX_CANDIDATE_BYTES
        self.connected = False
        self._server: asyncio.Server | None = None
        self._on_data: DataHandler | None = None
        self._on_disconnect: Callable[[], None] | None = None
        self._owner: _Conn | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, on_data: DataHandler,
                    on_disconnect: Callable[[], None] | None = None) -> None:
        """Binds/opens; after this ``address`` holds the bound address (ephemeral port)."""
        self._on_data, self._on_disconnect = on_data, on_disconnect
        if self.scheme == "tcp":
            host, _, port = self.rest.rpartition(":")
            try:
                port_n = int(port)
            except ValueError as e:
                raise LinkError(f"implant link {self.spec!r}: bad port {port!r}") from e
            if not 0 <= port_n <= 65535:
                raise LinkError(f"implant link {self.spec!r}: port {port_n} is not in 0–65535")
            self._server = await asyncio.start_server(self._serve, host or "127.0.0.1", port_n,
                                                      reuse_address=True)
            sock = self._server.sockets[0].getsockname()
            self.address = f"tcp:{sock[0]}:{sock[1]}"
        elif self.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                Path(self.rest).unlink()
            self._server = await asyncio.start_unix_server(self._serve, self.rest)
        else:
            self._open_tty()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(reader, writer)
        try:
            if not await self._audition(conn):
                return
            while data := await reader.read(1 << 16):
                if self._owner is not conn:        # replaced by a newer implant
                    return
                conn.last_rx = time.monotonic()
                assert self._on_data is not None
                self._on_data(data)
        except (ConnectionError, OSError) as e:
            log.warning("implant link read failed: %s", e)
        finally:
            self._tasks.discard(task)
            conn.writer.close()
            if self._owner is conn:
                self._owner = None
                self.connected = False
                log.info("implant disconnected")
                if self._on_disconnect:
                    self._on_disconnect()

    async def _audition(self, conn: _Conn) -> bool:
        """Holds a new connection's bytes until it proves itself (a valid frame) and may take
        the link; False when it was dropped or closed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.auth_s
        while True:
            if conn.proven and self._may_take_over():
                self._promote(conn)
                return True
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                # wake up now and then: the owner may fall silent while this one waits
                data = await asyncio.wait_for(conn.reader.read(1 << 16),
                                              min(left, max(0.02, self.silence_s / 2)))
            except TimeoutError:
                if loop.time() < deadline:
                    continue
                if conn.proven:
                    self.refused += 1
                    log.warning("implant link: %s sends valid frames but the implant on the "
                                "link is streaming; refused", conn.name)
                else:
                    self.squatters_dropped += 1
                    log.warning("implant link: %s sent no valid frame within %.1f s; dropped",
                                conn.name, self.auth_s)
                conn.abort()
                return False
            if not data:
                return False
            conn.last_rx = time.monotonic()
            conn.held += data
            if len(conn.held) > MAX_CANDIDATE_BYTES:
                cut = len(conn.held) - MAX_CANDIDATE_BYTES
                self.held_bytes_dropped += cut
                del conn.held[:cut]
            if not conn.proven and conn.probe.feed(data):
                conn.proven = True

    def _may_take_over(self) -> bool:
        owner = self._owner
        return owner is None or time.monotonic() - owner.last_rx > self.silence_s

    def _promote(self, conn: _Conn) -> None:
        old = self._owner
        if old is not None:
            log.warning("implant link: %s went silent; %s takes the link", old.name, conn.name)
            self._owner = None
            old.abort()
            if self._on_disconnect:
                self._on_disconnect()
        self._owner = conn
        self.connected = True
        self.connections += 1
        log.info("implant connected on %s (%s)", self.address, conn.name)
        held, conn.held = bytes(conn.held), bytearray()
        if held and self._on_data:
            self._on_data(held)

    def _open_tty(self) -> None:
        dev, _, baud = self.rest.partition(",")
        try:
            fd = os.open(dev, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            raise LinkError(f"implant link {self.spec!r}: cannot open {dev}: {e}") from e
        tty.setraw(fd)
        if baud:
            if int(baud) not in _BAUDS:
                os.close(fd)
                raise LinkError(f"implant link {self.spec!r}: unsupported baud rate {baud}")
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = _BAUDS[int(baud)]
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._fd = fd
        self.connected = True
        self.connections += 1
        asyncio.get_running_loop().add_reader(fd, self._read_tty)

    def _read_tty(self) -> None:
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as e:      # pty master closed (EIO): wait for it to come back
            log.warning("implant tty read failed: %s", e)
            data = b""
        if data and self._on_data:
            self._on_data(data)
        elif not data:
            asyncio.get_running_loop().remove_reader(self._fd)
            self.connected = False
            if self._on_disconnect:
                self._on_disconnect()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            owner, self._owner = self._owner, None
            tasks = list(self._tasks)
            for task in tasks:                 # the owner's reader and any candidates
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            if owner is not None:
                self.connected = False
                if self._on_disconnect:
                    self._on_disconnect()
        elif hasattr(self, "_fd"):
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(self._fd)
                os.close(self._fd)
