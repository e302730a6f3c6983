"""Byte streams from the implant, opened by an address string (Bumble-style schemes):

- ``tcp:HOST:PORT``  the hub listens; one implant connection at a time (port 0: ephemeral)
- ``unix:PATH``      the hub listens on a unix socket
- ``serial:DEVICE[,BAUD]`` / ``pty:DEVICE``  a serial port or pseudo-terminal, raw mode

``LinkTransport.run(on_data)`` delivers bytes until cancelled; connections may come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.link.frame import LinkError

log = logging.getLogger(__name__)
DataHandler = Callable[[bytes], None]
_BAUDS = {b: getattr(termios, f"B{b}") for b in (9600, 115200, 230400, 460800, 921600,
                                                 1000000, 2000000, 3000000, 4000000)
          if hasattr(termios, f"B{b}")}


class LinkTransport:
    """Opens the implant link named by ``spec`` and feeds everything it reads to a handler."""

    def __init__(self, spec: str) -> None:
        scheme, _, rest = spec.partition(":")
        if scheme not in ("tcp", "unix", "serial", "pty") or not rest:
            raise LinkError(f"implant link {spec!r}: want tcp:HOST:PORT, unix:PATH, "
                            "serial:DEVICE[,BAUD] or pty:DEVICE")
        self.spec, self.scheme, self.rest = spec, scheme, rest
        self.address: str = spec
        self.connections = 0
        self.connected = False
        self._server: asyncio.Server | None = None
        self._on_data: DataHandler | None = None
        self._on_disconnect: Callable[[], None] | None = None
        self._serve_task: asyncio.Task[Any] | None = None
        self._writer: asyncio.StreamWriter | None = None

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
        if self.connected:
            log.warning("implant link: refusing a second implant connection")
            writer.close()
            return
        self.connected = True
        self.connections += 1
        self._serve_task = asyncio.current_task()
        self._writer = writer
        log.info("implant connected on %s", self.address)
        try:
            while data := await reader.read(1 << 16):
                assert self._on_data is not None
                self._on_data(data)
        except (ConnectionError, OSError) as e:
            log.warning("implant link read failed: %s", e)
        finally:
            self.connected = False
            writer.close()
            log.info("implant disconnected")
            if self._on_disconnect:
                self._on_disconnect()

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
            if self._writer is not None and self._serve_task is not None:
                self._writer.close()
                await asyncio.wait([self._serve_task], timeout=1.0)
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        elif hasattr(self, "_fd"):
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(self._fd)
                os.close(self._fd)
