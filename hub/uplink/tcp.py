"""TCP uplink for bench use and tests: the hub listens, one host at a time.

Hub → host: each chunk as ``u16 LE length`` + chunk bytes. Host → hub: the same, one command
chunk per record (the BLE CONTROL write equivalent). A token bucket caps the throughput like a
radio would (``rate_bps``; None = uncapped), and a link-model schedule changes the cap or cuts
the link for a while (``"10:rate=260e3,20:outage=5"``: seconds after the first host connected).
During a cut the socket stays open but nothing flows and ``connected`` is False, as when a radio
is out of range.

Who may hold the link (the BLE subscription's equivalent): a new connection is a *candidate*
until it sends its first record — an empty record (``00 00``) is the receiver's hello, a command
counts too. A candidate silent for ``auth_s`` is dropped, so an idle client squatting the port
costs nothing and never displaces the host that owns the link. A second host that says hello is
refused while the owner is alive; it takes over when the owner has stopped reading (a send
blocked for ``stall_s``) or is gone.

Failures never spin: a send that fails drops that peer at once (``connected`` turns False and
the scheduler waits for the next host; the scheduler also yields after every chunk, so an
uncapped link never starves the event loop), and ``stop`` gives a host that does not read a
bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from hub.uplink.base import CommandHandler, Uplink
from hub.wire import DEFAULT_PAYLOAD_SIZE

log = logging.getLogger(__name__)


class UplinkError(ValueError):
    """A bad uplink address or link-model schedule."""


def parse_schedule(spec: str) -> list[tuple[float, str, float]]:
    """``"T:rate=BPS,T:outage=S"`` → [(t, "rate"|"outage", value)], sorted by time."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            t, _, action = item.partition(":")
            key, _, value = action.partition("=")
            if key not in ("rate", "outage"):
                raise ValueError(f"unknown action {key!r}")
            out.append((float(t), key, float(value)))
        except ValueError as e:
            raise UplinkError(f"link schedule item {item!r}: {e} (want T:rate=BPS or "
                              "T:outage=SECONDS)") from e
    return sorted(out)


class TokenBucket:
    """Bytes may leave at ``rate_bps``/8 per second with a small burst."""

    def __init__(self, rate_bps: float | None, burst_bytes: int = 1024) -> None:
        self.burst = burst_bytes
        self.set_rate(rate_bps)
        self._tokens = float(burst_bytes)
        self._t = time.monotonic()

    def set_rate(self, rate_bps: float | None) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise UplinkError(f"rate {rate_bps} bit/s must be > 0")
        self.rate_bps = rate_bps

    async def take(self, n: int) -> None:
        if self.rate_bps is None:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate_bps / 8)
            self._t = now
            if self._tokens >= n:
                self._tokens -= n
                return
            await asyncio.sleep((n - self._tokens) * 8 / self.rate_bps)


class _Peer:
    """One accepted connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.name = str(writer.get_extra_info("peername"))

    def abort(self) -> None:
        """Closes at once, without waiting for unsent bytes (a dead or hostile peer)."""
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.transport.abort()


class TcpUplink(Uplink):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_bps: float | None = None,
                 payload_size: int = DEFAULT_PAYLOAD_SIZE, schedule: str = "",
                 auth_s: float = 3.0, stall_s: float = 5.0, stop_s: float = 1.0) -> None:
        super().__init__()
        if not 0 <= port <= 65535:
            raise UplinkError(f"TCP uplink port {port}: want 0–65535")
        self.host, self.port = host, port
        self._payload_size = payload_size
        self.auth_s, self.stall_s, self.stop_s = auth_s, stall_s, stop_s
        self.bucket = TokenBucket(rate_bps, burst_bytes=max(2 * payload_size, 512))
        self.schedule = parse_schedule(schedule)
        self._server: asyncio.Server | None = None
        self._owner: _Peer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._schedule_task: asyncio.Task[None] | None = None
        self._outage_until = 0.0
        self._sending_since: float | None = None   # a send waiting on the owner's socket
        self._on_command: CommandHandler | None = None
        self.outages = 0
        self.stats.extra.update({"auth_timeouts": 0.0, "refused": 0.0, "send_failures": 0.0,
                                 "takeovers": 0.0})

    @property
    def payload_size(self) -> int:
        return self._payload_size

    @property
    def connected(self) -> bool:
        return self._owner is not None and time.monotonic() >= self._outage_until

    @property
    def nominal_bps(self) -> float | None:
        return self.bucket.rate_bps

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    @property
    def _writer(self) -> asyncio.StreamWriter | None:
        """The owner's writer (None without an owner)."""
        return self._owner.writer if self._owner is not None else None

    async def start(self, on_command: CommandHandler) -> None:
        self._on_command = on_command
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("TCP uplink listening on %s (cap %s bit/s)", self.address, self.bucket.rate_bps)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = _Peer(reader, writer)
        try:
            first = await self._hello(peer)
            if first is None or not self._admit(peer):
                return
            if first:
                self._command(first)
            while True:
                head = await reader.readexactly(2)
                self._command(await reader.readexactly(int.from_bytes(head, "little")))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            if self._owner is peer:
                self._lose_owner("host disconnected from the TCP uplink")
            peer.writer.close()

    async def _hello(self, peer: _Peer) -> bytes | None:
        """The candidate's first record (b"" for the hello), or None when it stayed silent."""
        try:
            head = await asyncio.wait_for(peer.reader.readexactly(2), self.auth_s)
            return await asyncio.wait_for(
                peer.reader.readexactly(int.from_bytes(head, "little")), self.auth_s)
        except TimeoutError:
            self.stats.extra["auth_timeouts"] += 1
            log.warning("TCP uplink: %s sent no hello within %.1f s; dropped", peer.name,
                        self.auth_s)
            peer.abort()
            return None

    def _admit(self, peer: _Peer) -> bool:
        """Makes ``peer`` the owner, unless a live owner holds the link."""
        owner = self._owner
        if owner is not None:
            if not self._owner_stalled():
                self.stats.extra["refused"] += 1
                log.warning("TCP uplink: a host is already connected; refusing %s", peer.name)
                peer.abort()
                return False
            self.stats.extra["takeovers"] += 1
            self._lose_owner(f"TCP uplink: {owner.name} stopped reading; {peer.name} takes over")
            owner.abort()
        self._owner = peer
        self.stats.connects += 1
        log.info("host %s connected to the TCP uplink", peer.name)
        if self.schedule and self._schedule_task is None:
            self._schedule_task = asyncio.create_task(self._run_schedule())
        return True

    def _owner_stalled(self) -> bool:
        since = self._sending_since
        return since is not None and time.monotonic() - since > self.stall_s

    def _lose_owner(self, why: str) -> None:
        self._owner = None
        self._sending_since = None
        self.stats.disconnects += 1
        log.info("%s", why)

    def _command(self, chunk: bytes) -> None:
        if chunk and self._on_command is not None:
            self._on_command(chunk)

    async def _run_schedule(self) -> None:
        t0 = time.monotonic()
        for t, key, value in self.schedule:
            await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
            if key == "rate":
                log.info("link model: cap now %.0f bit/s", value)
                self.bucket.set_rate(value)
            else:
                log.info("link model: outage for %.1f s", value)
                self.cut(value)

    def cut(self, seconds: float) -> None:
        """Nothing flows for ``seconds`` (the peer stays attached, as a radio out of range)."""
        self._outage_until = time.monotonic() + seconds
        self.outages += 1
        self.stats.disconnects += 1
        asyncio.get_running_loop().call_later(seconds, self._end_outage)

    def _end_outage(self) -> None:
        if self._owner is not None:
            self.stats.connects += 1

    async def send(self, chunk: bytes) -> bool:
        if len(chunk) > self._payload_size:
            raise ValueError(f"chunk of {len(chunk)} bytes exceeds payload_size "
                             f"{self._payload_size}")
        if not self.connected:
            self.stats.send_refused += 1
            return False
        await self.bucket.take(len(chunk))
        peer = self._owner
        if peer is None or not self.connected:
            self.stats.send_refused += 1
            return False
        try:
            if peer.writer.transport.is_closing():
                raise ConnectionResetError("the host's connection is closing")
            peer.writer.write(len(chunk).to_bytes(2, "little") + chunk)
            self._sending_since = time.monotonic()
            await peer.writer.drain()
        except (ConnectionError, OSError) as e:
            # the peer is gone (reset, broken pipe): drop it now, so that ``connected`` turns
            # False and the scheduler waits for the next host instead of retrying a corpse
            self.stats.extra["send_failures"] += 1
            if self._owner is peer:
                self._lose_owner(f"TCP uplink: send to {peer.name} failed ({e!r}); dropped")
            peer.abort()
            return False
        finally:
            self._sending_since = None
        self.stats.chunks_sent += 1
        self.stats.bytes_sent += len(chunk)
        return True

    async def stop(self) -> None:
        if self._schedule_task is not None:
            self._schedule_task.cancel()
        if self._server is not None:
            self._server.close()
        peer, self._owner = self._owner, None
        if peer is not None:
            try:     # what the host has not read yet, for a bounded time
                await asyncio.wait_for(peer.writer.drain(), self.stop_s)
                peer.writer.close()
            except (TimeoutError, ConnectionError, OSError):
                log.warning("TCP uplink: the host did not read what was left within %.1f s; "
                            "closing anyway", self.stop_s)
                peer.abort()
        for task in list(self._tasks):      # candidates and the owner's reader
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.stop_s)
