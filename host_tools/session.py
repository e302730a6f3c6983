"""The host's one receive path, over any ``HubLink`` (TCP or BLE): ``HubSession`` and ``record``.

A session keeps a link connected (``host_tools.hublink.stay_connected``: back-off, first
connection within ``connect_timeout`` or ``HubUnreachable``), feeds every chunk to one
``Receiver`` (reassembly, decoding, continuity, accounting, latency), fits time sync from the
hub's TimeSync packets, and matches command results to the commands it sent. TCP and BLE behave
the same in all of it, including across reconnects: the hub keeps one chunk stream per session
(and the BLE uplink re-sends notifications its controller never confirmed), so after a reconnect
a partial packet is completed when the first chunk carries the next sequence number, and dropped
otherwise (a hub restart, a real loss) — see ``Receiver.link_changed``.

Hooks for other tools (packet logs, NWB writers, live status)::

    class MySink(LinkObserver):                         # override what you need
        def on_chunk(self, host_time_ns: int, chunk: bytes) -> None: ...     # every chunk
        def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None: ...  # every packet
        def on_link(self, host_time_ns: int, state: str) -> None: ...  # "connected" | "lost"
        def on_command(self, host_time_ns: int, cmd: pb.Command) -> None: ...  # each one sent
        def close(self, summary: dict) -> None: ...      # the session ended (flush files)

    link = open_link(tcp="127.0.0.1:7000")              # or BleLink(name, backend=…)
    async with HubSession(link, observers=[MySink()]) as s:    # returns once connected
        res = await s.command(pb.Command(request_status=pb.RequestStatus()))
        res = await s.configure(["threshold=6", "raw_channels=0,1"])  # raises CommandRejected
        await s.wait(duration=10, until_final=True)
        s.timesync.to_wall_s(sample_index)              # hub sample → Unix time
    summary = s.summary()

Observers run on the event loop, synchronously, in the order given; they must not block. Chunks
reach ``on_chunk`` before they are reassembled; ``on_envelope`` sees each decoded packet after the
receiver counted it. ``command`` fills in ``request_id`` (when 0) and ``schema_version``, frames the
command into chunks the current connection carries, and returns the hub's ``CommandResult``
(any code; ``CommandTimeout`` when none comes); ``configure`` raises ``CommandRejected`` unless
the result is OK. ``record(link, …)`` is ``hubctl record`` without the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from host_tools.hublink import HubLink, LinkError, stay_connected
from host_tools.receiver import Receiver
from host_tools.timesync import TimeSyncFit
from hub.dsp.sorting import TemplateSet
from hub.wire import SCHEMA_VERSION, Chunker, pb
from hub.wire import settings as wire_settings
from hub.wire.backoff import Backoff

log = logging.getLogger(__name__)


class CommandTimeout(TimeoutError):
    """The hub sent no result for a command in time."""


class CommandRejected(RuntimeError):
    """The hub answered a command with a code other than RESULT_OK."""

    def __init__(self, result: pb.CommandResult) -> None:
        self.result = result
        super().__init__(f"hub rejected {result.command or 'command'} (request "
                         f"{result.request_id}): {pb.ResultCode.Name(result.code)}: "
                         f"{result.message or '(no message)'}")


class LinkObserver:
    """Receives everything a session sees; every hook is a no-op here."""

    def on_chunk(self, host_time_ns: int, chunk: bytes) -> None:
        """One chunk as it arrived (before reassembly)."""

    def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None:
        """One decoded packet (after the receiver counted it)."""

    def on_link(self, host_time_ns: int, state: str) -> None:
        """``"connected"`` or ``"lost"``."""

    def on_command(self, host_time_ns: int, cmd: pb.Command) -> None:
        """A command about to be sent (request id and schema version filled in)."""

    def close(self, summary: dict[str, Any]) -> None:
        """The session ended; ``summary`` is what ``HubSession.summary`` returns."""


class HubSession:
    """A link kept connected, decoded into a Receiver, with time sync and commands."""

    def __init__(self, link: HubLink, *, observers: Sequence[LinkObserver] = (),
                 keep_raw: bool = False, connect_timeout: float = 30.0,
                 backoff: Backoff | None = None, timesync_every_s: float | None = 5.0) -> None:
        self.link = link
        self.observers = list(observers)
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff(base_s=0.1, cap_s=2.0)
        self.timesync_every_s = timesync_every_s
        self.receiver = Receiver(self._on_envelope, keep_raw=keep_raw)
        self.timesync = TimeSyncFit()
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.errors: list[str] = []
        self.results: list[pb.CommandResult] = []
        self._pending: dict[int, asyncio.Future[pb.CommandResult]] = {}
        self._next_id = 1
        self._chunker: Chunker | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._final = asyncio.Event()
        self._t0 = time.monotonic()
        self._closed_summary: dict[str, Any] | None = None

    # ------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Starts the link; returns once connected (``HubUnreachable`` if never)."""
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(stay_connected(
            self.link, self._on_chunk, self._stop, connect_timeout=self.connect_timeout,
            backoff=self.backoff, on_state=self._on_state, errors=self.errors))
        ready = asyncio.ensure_future(self.connected.wait())
        try:
            await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self.connected.is_set():
            await self._task           # raises HubUnreachable (or returns: stopped)
            raise LinkError(f"{self.link.describe()}: link ended before connecting")
        if self.timesync_every_s:
            self._sync_task = asyncio.create_task(self._round_trips(self.timesync_every_s))

    async def _round_trips(self, every_s: float) -> None:
        """A TimeSyncRequest every ``every_s`` while connected: the hub echoes it with its own
        time, which bounds the hub → host clock offset by half the round trip (the fit in
        host_tools.timesync; the first one after the configuration the caller sends)."""
        while True:
            await asyncio.sleep(every_s)
            if not self.connected.is_set():
                continue
            cmd = pb.Command(time_sync=pb.TimeSyncRequest(host_time_ns=time.monotonic_ns()))
            try:
                await self.command(cmd, timeout=every_s)
            except (CommandTimeout, LinkError) as e:
                log.debug("time-sync round trip: %s", e)

    async def stop(self) -> None:
        """Disconnects; the receiver keeps what it got. Idempotent."""
        self._stop.set()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await self._task
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        await self.link.aclose()

    async def __aenter__(self) -> HubSession:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
        self.close()

    def close(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Hands the summary (``summary()`` unless given) to every observer's ``close``, once."""
        if self._closed_summary is None:
            self._closed_summary = summary if summary is not None else self.summary()
            for o in self.observers:
                o.close(self._closed_summary)
        return self._closed_summary

    @property
    def final_seen(self) -> bool:
        """The hub's final shed report (clean shutdown) of the current session arrived."""
        rx = self.receiver
        return bool(rx.order) and rx.sessions[rx.order[-1]].final

    async def wait(self, duration: float | None = None, until_final: bool = False) -> str:
        """Receives until ``duration`` s after start, the hub's final report (``until_final``;
        the link closing after it), or the link task ending. Returns why it stopped:
        "duration", "final" or "ended"."""
        assert self._task is not None, "start() first"
        waits: set[asyncio.Future[Any]] = {self._task}
        final = asyncio.ensure_future(self._final_and_closed()) if until_final else None
        if final is not None:
            waits.add(final)
        try:
            timeout = None if duration is None else max(
                0.0, duration - (time.monotonic() - self._t0))
            done, _ = await asyncio.wait(waits, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if final is not None:
                final.cancel()
        if final is not None and final in done:
            return "final"
        return "ended" if self._task in done else "duration"

    async def _final_and_closed(self) -> None:
        await self._final.wait()
        # the hub closes the link after its final report; give in-flight chunks a moment
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.wait_closed(), 2.0)

    # ------------------------------------------------------------ input
    def _on_state(self, state: str) -> None:
        t = time.monotonic_ns()
        if state == "connected":
            self.ever_connected = True
            self._chunker = Chunker(self.link.command_chunk_size)
            self.connected.set()
        else:
            self.connected.clear()
            self._chunker = None
            self.receiver.link_changed()
        for o in self.observers:
            o.on_link(t, state)

    def _on_chunk(self, chunk: bytes, t_ns: int) -> None:
        for o in self.observers:
            o.on_chunk(t_ns, chunk)
        self.receiver.feed_chunk(chunk, t_ns)

    def _on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        kind = env.WhichOneof("payload")
        if kind == "time_sync":
            self.timesync.add_packet(env.time_sync, t_ns)
        elif kind == "result":
            if env.result.HasField("time_sync"):       # a round trip's echo
                self.timesync.add_packet(env.result.time_sync, t_ns)
            self.results.append(env.result)
            fut = self._pending.pop(env.result.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(env.result)
        elif kind == "shed" and env.shed.final:
            self._final.set()
        for o in self.observers:
            o.on_envelope(t_ns, env)

    # ------------------------------------------------------------ commands
    async def command(self, cmd: pb.Command, timeout: float = 10.0) -> pb.CommandResult:
        """Sends one command and returns the hub's result for it (whatever its code)."""
        if not cmd.request_id:
            cmd.request_id = self._next_id
        self._next_id = max(self._next_id, cmd.request_id) + 1
        cmd.schema_version = cmd.schema_version or SCHEMA_VERSION
        if self._chunker is None:
            await asyncio.wait_for(self.connected.wait(), timeout)
        assert self._chunker is not None
        fut: asyncio.Future[pb.CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[cmd.request_id] = fut
        t = time.monotonic_ns()
        for o in self.observers:
            o.on_command(t, cmd)
        try:
            for chunk in self._chunker.chunks(cmd.SerializeToString()):
                await self.link.send_chunk(chunk)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError as e:
            raise CommandTimeout(f"no result for {cmd.WhichOneof('command')} (request "
                                 f"{cmd.request_id}) within {timeout:g} s") from e
        finally:
            self._pending.pop(cmd.request_id, None)

    async def status(self, timeout: float = 10.0) -> pb.Telemetry:
        """The hub's status (RequestStatus)."""
        res = await self.command(pb.Command(request_status=pb.RequestStatus()), timeout)
        if res.code != pb.RESULT_OK:
            raise CommandRejected(res)
        return res.status

    async def n_channels(self, timeout: float) -> int:
        """The hub's implant channel count, once the implant streams (polled)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            n = int((await self.status(max(1.0, end - loop.time()))).n_channels)
            if n:
                return n
            if loop.time() >= end:
                raise CommandTimeout(f"the hub reported no implant channels within {timeout:g} s")
            await asyncio.sleep(0.2)

    async def configure(self, settings: list[str], timeout: float = 10.0) -> pb.CommandResult:
        """One Configure from ``FIELD=VALUE`` strings (the settings schema's parser,
        hub.wire.settings: a malformed value raises SettingError naming the field, before
        anything is sent); raises CommandRejected unless the hub answers OK."""
        n = None
        if any(s.startswith("raw_channels") for s in settings):
            n = await self.n_channels(max(timeout, self.connect_timeout))
        res = await self.command(wire_settings.configure_command(settings, 0, n), timeout)
        if res.code != pb.RESULT_OK:
            raise CommandRejected(res)
        return res

    async def load_templates(self, ts: TemplateSet, timeout: float = 30.0
                             ) -> list[pb.CommandResult]:
        """Loads a templates file into the hub's online sorter (host_tools.templates_wire:
        every field the file's loader uses, in as many parts as the set needs), once the
        implant streams; raises ValueError when the file is for another channel count and
        CommandRejected on the first part the hub refuses (the hub then applied nothing)."""
        from host_tools.templates_wire import load_templates_parts

        parts = load_templates_parts(ts)
        n = await self.n_channels(max(timeout, self.connect_timeout))
        if n != ts.n_channels:
            raise ValueError(f"the templates are for {ts.n_channels} channels, the hub's "
                             f"implant has {n}")
        results = []
        for msg in parts:
            res = await self.command(pb.Command(load_templates=msg), timeout)
            if res.code != pb.RESULT_OK:
                raise CommandRejected(res)
            results.append(res)
        return results

    # ------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        s = self.receiver.summary()
        c = self.link.counters()
        s["connects"] = c.get("connects", 0)
        s["connection"] = {"link": self.link.describe(), **c, "errors": self.errors[-5:]}
        if self.link.kind == "ble":
            s["ble"] = c
        s["time_sync"] = self.timesync.summary()
        s["wall_s"] = round(time.monotonic() - self._t0, 3)
        return s


@dataclass
class RecordResult:
    """What ``record`` returns: the summary, the session (its receiver, time-sync fit, results)
    and, when the hub rejected or never answered the configuration, that failure's message (the
    recording then stopped at once)."""

    summary: dict[str, Any]
    session: HubSession
    failure: str | None = None


async def record(link: HubLink, *, duration: float | None = None, until_final: bool = False,
                 settings: Sequence[str] = (), connect_timeout: float = 30.0,
                 observers: Sequence[LinkObserver] = (), keep_raw: bool = False,
                 stop: asyncio.Event | None = None,
                 templates: TemplateSet | None = None) -> RecordResult:
    """``hubctl record`` over any link: connect, configure (``settings``), load ``templates``
    into the online sorter (once the implant streams), receive until
    ``duration`` s, the hub's final report (``until_final``) or ``stop``. Raises
    ``HubUnreachable`` when no connection came within ``connect_timeout`` (or ``duration``, if
    shorter). Observers get ``close(summary)`` in every case."""
    session = HubSession(link, observers=observers, keep_raw=keep_raw,
                         connect_timeout=connect_timeout if duration is None
                         else min(connect_timeout, duration))
    failure = None
    try:
        await session.start()
        if settings:
            try:
                await session.configure(list(settings))
            except (CommandRejected, CommandTimeout, LinkError) as e:
                failure = str(e)
                log.error("%s", e)
        if templates is not None and failure is None:
            try:
                res = await session.load_templates(templates)
                log.info("templates loaded: %d units in %d part(s)", templates.unit_ids.size,
                         len(res))
            except (CommandRejected, CommandTimeout, LinkError, ValueError) as e:
                failure = str(e)
                log.error("%s", e)
        if failure is None:
            waiter = asyncio.ensure_future(session.wait(duration, until_final))
            waits: set[asyncio.Future[Any]] = {waiter}
            if stop is not None:
                waits.add(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
    finally:
        await session.stop()
        summary = session.summary()
        if failure is not None:
            summary["command_failure"] = failure
        session.close(summary)
    return RecordResult(summary, session, failure)
