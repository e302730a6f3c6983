"""A live hub link for the decoding tools (``hubctl cursor``, ``hubctl lsl``): TCP or BLE,
every decoded packet handed to a callback with its host receive time, the time-sync fit kept,
and one Configure sent after the first connection.

This is a thin seam over the receivers the project has (``record_cli.TcpClient``,
``ble_receiver.BleReceiver``): the tools only see ``on_envelope(env, t_ns)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host_tools.receiver import Receiver
from host_tools.timesync import TimeSyncFit
from hub.wire import pb

log = logging.getLogger(__name__)

OnEnvelope = Callable[[pb.Envelope, int], None]


def add_link_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="HOST:PORT", help="the hub's TCP uplink")
    p.add_argument("--ble", metavar="NAME", help="the hub's BLE name (instead of --tcp)")
    p.add_argument("--hci", metavar="TRANSPORT",
                   help="with --ble: Bumble HCI transport (virtual radio) instead of the OS one")
    p.add_argument("--keystore", type=Path, default=Path("host_bonds.json"),
                   help="with --ble --hci: this host's bond keys")
    p.add_argument("--pair", action="store_true", help="with --ble: pair if not bonded")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="configure the hub after connecting (repeatable)")
    p.add_argument("--connect-timeout", type=float, default=30.0)


class LiveLink:
    """Runs until ``stop`` is set; ``timesync`` maps hub samples to host monotonic ns."""

    def __init__(self, args: argparse.Namespace, on_envelope: OnEnvelope) -> None:
        if not args.tcp and not args.ble:
            raise ValueError("give --tcp HOST:PORT or --ble NAME")
        self.args = args
        self.timesync = TimeSyncFit()
        self._user = on_envelope
        self.rx = Receiver(self._on_envelope)
        self.connected = asyncio.Event()

    def _on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        if env.WhichOneof("payload") == "time_sync":
            self.timesync.add_packet(env.time_sync, t_ns)
        self._user(env, t_ns)

    async def _configure(self, send: Callable[[pb.Command], Any]) -> None:
        from host_tools.record_cli import configure_command

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
        await send(configure_command(self.args.set, 1, n))

    async def run(self, stop: asyncio.Event) -> None:
        if self.args.ble:
            await self._run_ble(stop)
        else:
            await self._run_tcp(stop)

    async def _run_tcp(self, stop: asyncio.Event) -> None:
        from host_tools.record_cli import TcpClient

        host, _, port = self.args.tcp.rpartition(":")
        client = TcpClient(host or "127.0.0.1", int(port), self.rx)
        task = asyncio.create_task(client.run(self.args.connect_timeout, False))
        try:
            while client.writer is None and not task.done():
                await asyncio.sleep(0.05)
            if task.done():
                task.result()                 # raises: never connected
            self.connected.set()
            await self._configure(client.send)
            stop_wait = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _run_ble(self, stop: asyncio.Event) -> None:
        from host_tools.ble_receiver import BleReceiver
        from host_tools.bleak_bumble import BumbleBackend

        backend = (BumbleBackend(self.args.hci, keystore=self.args.keystore) if self.args.hci
                   else None)

        def on_chunk(chunk: bytes, t_ns: int) -> None:
            self.rx.feed_chunk(chunk, t_ns)

        ble = BleReceiver(self.args.ble, on_chunk, backend=backend, pair=self.args.pair,
                          scan_timeout=self.args.connect_timeout)
        inner = asyncio.Event()
        task = asyncio.create_task(ble.run(inner))
        try:
            await asyncio.wait_for(ble.subscribed.wait(), self.args.connect_timeout)
            self.connected.set()

            async def send(cmd: pb.Command) -> None:
                await ble.send_command(cmd.SerializeToString())

            await self._configure(send)
            await stop.wait()
        finally:
            inner.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            if backend is not None:
                with contextlib.suppress(Exception):
                    await backend.close()
