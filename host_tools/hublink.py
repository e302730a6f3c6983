"""One link to a hub, whatever carries it — the host's transport facade (bleak does the same for
BLE backends: one API, BlueZ/CoreBluetooth/WinRT underneath).

``HubLink`` is one transport holding at most one connection at a time:

    await link.connect(on_chunk)   one attempt (TCP connect; BLE scan + connect + subscribe);
                                   raises ``LinkError``. From then on every chunk the hub sends
                                   goes to ``on_chunk(chunk, host_time_ns)`` on the event loop
                                   (host_time_ns = time.monotonic_ns() at arrival).
    await link.wait_closed()       returns when that connection is gone (peer closed, radio lost).
    await link.send_chunk(chunk)   one command chunk (TCP: a u16-length record; BLE: one CONTROL
                                   write with response); raises ``LinkError`` when not connected.
    link.command_chunk_size        the largest command chunk this connection takes.
    await link.disconnect()        ends the connection (idempotent).
    link.counters() -> dict        transport counters (connects, MTU, …) for the summary.
    await link.aclose()            disconnects and releases the transport (a Bumble device).

Implementations: ``TcpLink`` (here; the hub's TCP uplink) and ``BleLink``
(host_tools.ble_receiver; bleak's public API, the project's Bumble backend under ``--hci``).
``open_link`` builds one from ``hubctl record`` arguments.

``stay_connected`` is the one reconnect loop both transports use: ``hub.wire.backoff.Backoff``
(0.1 s doubling to 2 s, jittered) before every new attempt, reset only by a connection that
delivered data — a hub that accepts and closes at once (another host holds the link, a restart
loop) costs a few attempts per second, never a busy loop. The first connection must come
within ``connect_timeout`` (else ``HubUnreachable``); later ones are awaited until the caller
stops (a hub restart or a long radio outage).

The receive path above the links — reassembly, decoding, accounting, time sync, commands and
their results, observers — is ``host_tools.session`` (``HubSession`` and ``record``).
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hub.argtypes import host_port
from hub.wire import DEFAULT_PAYLOAD_SIZE
from hub.wire.backoff import Backoff

log = logging.getLogger(__name__)

#: (chunk bytes, host CLOCK_MONOTONIC ns at arrival)
ChunkHandler = Callable[[bytes, int], None]


class LinkError(ConnectionError):
    """A connection attempt failed, or the link is not connected."""


class HubUnreachable(LinkError):
    """No connection to the hub was ever made within the connect timeout."""


class HubLink(abc.ABC):
    """One transport to one hub (see the module docstring for the contract)."""

    #: "tcp" or "ble"
    kind: str = ""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where this link goes, for messages (``tcp:127.0.0.1:7000``, ``ble:ihub-01``)."""

    @abc.abstractmethod
    async def connect(self, on_chunk: ChunkHandler) -> None:
        """One connection attempt; chunks flow to ``on_chunk`` once it returns."""

    @abc.abstractmethod
    async def wait_closed(self) -> None:
        """Returns when the current connection is gone (at once if there is none)."""

    @abc.abstractmethod
    async def send_chunk(self, chunk: bytes) -> None:
        """One command chunk to the hub."""

    @property
    @abc.abstractmethod
    def command_chunk_size(self) -> int:
        """The largest command chunk the current connection carries."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Ends the current connection, if any."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """A connection is up."""

    def counters(self) -> dict[str, Any]:
        """Transport counters for the summary."""
        return {}

    async def aclose(self) -> None:
        """Disconnects and releases what the link holds."""
        await self.disconnect()


# ---------------------------------------------------------------- TCP
#: The receiver's hello on the TCP uplink (an empty record): the hub admits a connection as its
#: host only once it said something (hub.uplink.tcp drops silent squatters).
HELLO = b"\x00\x00"


class TcpLink(HubLink):
    """The hub's TCP uplink (``hub run --uplink tcp:HOST:PORT``): hub → host chunks and host →
    hub command chunks, each as ``u16 LE length`` + chunk; the hello goes first."""

    kind = "tcp"

    def __init__(self, host: str, port: int, attempt_timeout: float = 5.0) -> None:
        self.host, self.port = host, port
        self.attempt_timeout = attempt_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.connects = 0
        self.disconnects = 0

    def describe(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def command_chunk_size(self) -> int:
        return DEFAULT_PAYLOAD_SIZE

    async def connect(self, on_chunk: ChunkHandler) -> None:
        await self.disconnect()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.attempt_timeout)
        except (OSError, TimeoutError) as e:
            raise LinkError(f"{self.describe()}: {e or type(e).__name__}") from e
        self._writer = writer
        self.connects += 1
        writer.write(HELLO)
        self._reader_task = asyncio.create_task(self._pump(reader, writer, on_chunk))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    on_chunk: ChunkHandler) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                chunk = await reader.readexactly(int.from_bytes(head, "little"))
                on_chunk(chunk, time.monotonic_ns())
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.disconnects += 1
            if self._writer is writer:
                self._writer = None
            writer.close()

    async def wait_closed(self) -> None:
        task = self._reader_task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def send_chunk(self, chunk: bytes) -> None:
        w = self._writer
        if w is None or w.is_closing():
            raise LinkError(f"{self.describe()}: not connected")
        try:
            w.write(len(chunk).to_bytes(2, "little") + chunk)
            await w.drain()
        except (ConnectionError, OSError) as e:
            raise LinkError(f"{self.describe()}: {e}") from e

    async def disconnect(self) -> None:
        task, self._reader_task = self._reader_task, None
        w, self._writer = self._writer, None
        if w is not None:
            w.close()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def counters(self) -> dict[str, Any]:
        return {"transport": "tcp", "connects": self.connects, "disconnects": self.disconnects}


# ---------------------------------------------------------------- the reconnect loop
async def stay_connected(link: HubLink, on_chunk: ChunkHandler, stop: asyncio.Event, *,
                         connect_timeout: float, backoff: Backoff | None = None,
                         reconnect: bool = True,
                         on_state: Callable[[str], None] | None = None,
                         errors: list[str] | None = None) -> None:
    """Keeps ``link`` connected until ``stop`` is set. Raises ``HubUnreachable`` when the first
    connection does not come within ``connect_timeout``; with ``reconnect=False`` returns when
    the first connection ends. ``on_state("connected"|"lost")`` is called at every change
    (synchronously: no chunk of a connection arrives between its "lost" and the next attempt)."""
    loop = asyncio.get_running_loop()
    backoff = backoff or Backoff(base_s=0.1, cap_s=2.0)
    deadline = loop.time() + connect_timeout
    ever = False
    failures = 0
    got = [0]                          # chunks over the current connection

    def counted(chunk: bytes, t_ns: int) -> None:
        got[0] += 1
        on_chunk(chunk, t_ns)

    stopped = asyncio.ensure_future(stop.wait())

    async def until_stop(aw: Awaitable[Any]) -> tuple[bool, Any]:
        """(finished, result) of ``aw``, or (False, None) when stop came first."""
        fut = asyncio.ensure_future(aw)
        await asyncio.wait({fut, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not fut.done():
            fut.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await fut
            return False, None
        return True, fut.result()

    try:
        while not stop.is_set():
            try:
                got[0] = 0
                done, _ = await until_stop(link.connect(counted))
            except LinkError as e:
                if errors is not None:
                    errors.append(str(e))
                failures += 1
                log.log(logging.INFO if failures == 1 else logging.DEBUG,
                        "connect to %s failed (%s); retrying", link.describe(), e)
                if not ever and loop.time() >= deadline:
                    raise HubUnreachable(
                        f"no hub at {link.describe()} within {connect_timeout:g} s "
                        f"(last error: {e})") from e
                delay = backoff.next()
                if not ever:
                    delay = min(delay, max(0.0, deadline - loop.time()))
                await until_stop(asyncio.sleep(delay))
                continue
            if not done:
                break
            ever = True
            failures = 0
            log.info("connected to %s", link.describe())
            if on_state is not None:
                on_state("connected")
            await until_stop(link.wait_closed())
            if stop.is_set():
                break
            log.warning("link to %s lost%s", link.describe(),
                        "; reconnecting" if reconnect else "")
            if on_state is not None:
                on_state("lost")
            if not reconnect:
                return
            if got[0]:                 # a connection that carried data resets the ladder
                backoff.reset()
            await until_stop(asyncio.sleep(backoff.next()))
    finally:
        stopped.cancel()
        await link.disconnect()


def add_link_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose a link (``open_link``'s arguments), the same for every hubctl
    command that talks to a hub."""
    p.add_argument("--tcp", metavar="HOST:PORT", type=host_port, help="the hub's TCP uplink")
    p.add_argument("--ble", metavar="NAME", help="the hub's BLE name (instead of --tcp)")
    p.add_argument("--hci", metavar="TRANSPORT",
                   help="with --ble: Bumble HCI transport (virtual radio) instead of the OS one")
    p.add_argument("--keystore", type=Path, default=Path("host_bonds.json"),
                   help="with --ble --hci: this host's bond keys")
    p.add_argument("--pair", action="store_true", help="with --ble: pair if not bonded")


def open_link(tcp: str | tuple[str, int] | None = None, ble: str | None = None, *,
              hci: str | None = None, keystore: Any = None, pair: bool = False,
              scan_timeout: float = 10.0) -> HubLink:
    """A link from ``hubctl record`` arguments: ``tcp="HOST:PORT"`` or ``ble=NAME`` (with
    ``hci``: the Bumble HCI transport of the virtual radio instead of the OS adapter); ``tcp``
    may also be the (host, port) pair hub.argtypes.host_port parses."""
    if tcp and ble:
        raise ValueError("give --tcp or --ble, not both")
    if tcp:
        if isinstance(tcp, str):
            try:
                tcp = host_port(tcp)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"--tcp {e}") from e
        return TcpLink(*tcp)
    if ble:
        from host_tools.ble_receiver import BleLink

        backend = None
        if hci:
            from host_tools.bleak_bumble import BumbleBackend

            backend = BumbleBackend(hci, keystore=keystore) if keystore else BumbleBackend(hci)
        return BleLink(ble, backend=backend, pair=pair, scan_timeout=scan_timeout,
                       owns_backend=True)
    raise ValueError("give --tcp HOST:PORT or --ble NAME")
