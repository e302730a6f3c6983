"""A live hub link for the decoding tools (``hubctl cursor``, ``hubctl lsl``): TCP or BLE,
every decoded packet handed to a callback with its host receive time, the time-sync fit kept,
and one Configure sent after the first connection.

This is a thin seam over the host link facade (``host_tools.session.HubSession`` over TCP or
BLE: reconnects, reassembly and the time-sync fit with round trips, the same as ``hubctl
record``): the tools only see ``on_envelope(env, t_ns)``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable

from host_tools import hublink
from host_tools.hublink import open_link
from host_tools.receiver import Receiver
from host_tools.session import CommandRejected, CommandTimeout, HubSession, LinkObserver
from host_tools.timesync import TimeSyncFit
from hub.wire import pb
from hub.wire import settings as wire_settings

log = logging.getLogger(__name__)

OnEnvelope = Callable[[pb.Envelope, int], None]


def add_link_arguments(p: argparse.ArgumentParser) -> None:
    """The link options (host_tools.hublink) plus the live loop's configuration options."""
    hublink.add_link_arguments(p)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="configure the hub after connecting (repeatable)")
    p.add_argument("--connect-timeout", type=float, default=30.0)


class _Forward(LinkObserver):
    def __init__(self, on_envelope: OnEnvelope) -> None:
        self.user = on_envelope

    def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None:
        self.user(env, host_time_ns)


class LiveLink:
    """Runs until ``stop`` is set; ``timesync`` maps hub samples to host monotonic ns; ``rx``
    is the session's receiver (``rx.results``: the Configure's result has request id 1)."""

    def __init__(self, args: argparse.Namespace, on_envelope: OnEnvelope) -> None:
        if not args.tcp and not args.ble:
            raise ValueError("give --tcp HOST:PORT or --ble NAME")
        self.args = args
        link = open_link(args.tcp, args.ble, hci=args.hci, keystore=args.keystore,
                         pair=args.pair, scan_timeout=args.connect_timeout)
        self.session = HubSession(link, observers=[_Forward(on_envelope)],
                                  connect_timeout=args.connect_timeout)
        self.rx: Receiver = self.session.receiver
        self.timesync: TimeSyncFit = self.session.timesync
        self.connected = self.session.connected

    async def _configure(self) -> None:
        """One Configure (request id 1) once the hub reports its channel count (needed for
        raw_channels); its result lands in ``rx.results`` whatever its code."""
        if not self.args.set:
            return
        t0 = time.monotonic()
        n = None
        while n is None and time.monotonic() - t0 < self.args.connect_timeout:
            tel = self.rx.last_telemetry
            n = (tel.n_channels or None) if tel is not None else None
            if n is None and not any(s.startswith("raw_channels") for s in self.args.set):
                break
            await asyncio.sleep(0.1)
        cmd = wire_settings.configure_command(self.args.set, 1, n)
        try:
            res = await self.session.command(cmd, timeout=self.args.connect_timeout)
        except CommandTimeout as e:
            log.error("%s", e)
            return
        if res.code != pb.RESULT_OK:
            log.error("%s", CommandRejected(res))

    async def run(self, stop: asyncio.Event) -> None:
        """Connects (raises HubUnreachable when no hub comes within --connect-timeout),
        configures, and receives until ``stop``."""
        try:
            await self.session.start()
            await self._configure()
            await stop.wait()
        finally:
            await self.session.stop()
