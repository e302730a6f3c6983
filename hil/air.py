"""The virtual air: Bumble controllers on one link, each exposed as H4 HCI over TCP.

    python -m hil.air --devices hub,host [--model link.json] [--phy 2M --interval-ms 7.5 ...]

prints one JSON line ``{"ports": {"hub": P1, "host": P2}, "control": P3, "model": {...}}`` and
serves until SIGTERM/SIGINT. A hub attaches with ``tcp-client:127.0.0.1:P1``, a host with
``tcp-client:127.0.0.1:P2``. Each TCP client gets a fresh controller (a new client replaces the
previous one); when its TCP connection closes the controller goes silent (the peer sees a
supervision timeout, reason 0x08).

The radio itself (controllers that return HCI credits only inside simulated connection events)
is hil.air_link; this module serves it.

Control port (one JSON object per line, one JSON reply per line):
``{"cmd": "outage", "seconds": 6}`` starts an outage now; ``{"cmd": "stats"}`` returns per-
connection counters; ``{"cmd": "model"}`` the link model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble.transport.common import PacketParser

from hil.air_link import AirLink, ShapedController
from hil.radio_model import LinkModel

log = logging.getLogger(__name__)


class _HciServerProtocol(asyncio.Protocol):
    """One TCP client = one host attached to a fresh controller."""

    def __init__(self, device: _Device) -> None:
        self.device = device
        self.transport: asyncio.WriteTransport | None = None
        self.ctrl: ShapedController | None = None
        self.parser: PacketParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        old = self.device.active
        if old is not None:           # a new host replaces the previous one (its TCP may
            log.info("%s: new HCI client replaces the previous one", self.device.name)
            old.detach()              # not have been seen closing yet)
        self.transport = transport
        self.device.active = self
        self.device.generation += 1
        self.ctrl = ShapedController(f"{self.device.name}#{self.device.generation}",
                                     self.device.link)
        self.ctrl.host = self          # controller → host packets go to on_packet
        self.parser = PacketParser(self.ctrl)
        log.info("%s: host attached", self.device.name)

    def on_packet(self, packet: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(packet)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            try:
                self.parser.feed_data(data)
            except Exception as e:  # garbage from a host must not take the air down
                log.warning("%s: bad HCI data (%s); dropping the client", self.device.name, e)
                if self.transport is not None:
                    self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.detach()

    def detach(self) -> None:
        """The host is gone: its controller goes silent (peers time out)."""
        if self.device.active is self:
            self.device.active = None
        if self.ctrl is not None and not self.ctrl.dead:
            log.info("%s: host detached; controller silent", self.device.name)
            self.ctrl.go_silent()
            self.device.link._reap()
        if self.transport is not None:
            self.transport.close()
        self.transport = None
        self.parser = None


class _PtyReader(asyncio.Protocol):
    def __init__(self, target: _HciServerProtocol) -> None:
        self.target = target

    def data_received(self, data: bytes) -> None:
        self.target.data_received(data)


async def open_pty(dev: _Device) -> str:
    """Exposes a device as H4 HCI on a pseudo-terminal, the way a controller chip on a UART
    looks to the hub (``serial:/dev/pts/N,3000000,rtscts``). The air keeps the slave side open,
    so a hub that goes away is not noticed (use TCP to test dead peers)."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    loop = asyncio.get_running_loop()
    proto = _HciServerProtocol(dev)
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol,
                                              os.fdopen(os.dup(master), "wb", 0))
    proto.connection_made(writer)
    await loop.connect_read_pipe(lambda: _PtyReader(proto), os.fdopen(master, "rb", 0))
    dev.pty_slave_fd = slave
    return path


@dataclass
class _Device:
    name: str
    link: AirLink
    active: _HciServerProtocol | None = None
    generation: int = 0
    server: asyncio.Server | None = None
    port: int = 0
    pty: str = ""
    pty_slave_fd: int = -1


class Air:
    """The air process's state: the link, one HCI server per device, a control server."""

    def __init__(self, model: LinkModel, names: list[str], ptys: list[str] | None = None) -> None:
        self.model = model
        self.names = names
        self.ptys = ptys or []
        self.link: AirLink | None = None
        self.devices: list[_Device] = []
        self.control: asyncio.Server | None = None
        self.control_port = 0

    async def start(self, host: str = "127.0.0.1", ports: list[int] | None = None) -> None:
        self.link = AirLink(self.model)
        loop = asyncio.get_running_loop()
        for i, name in enumerate(self.names):
            dev = _Device(name, self.link)
            port = ports[i] if ports else 0
            dev.server = await loop.create_server(
                functools.partial(_HciServerProtocol, dev), host, port)
            dev.port = dev.server.sockets[0].getsockname()[1]
            if name in self.ptys:
                dev.pty = await open_pty(dev)
            self.devices.append(dev)
        self.control = await asyncio.start_server(self._control_client, host, 0)
        self.control_port = self.control.sockets[0].getsockname()[1]

    def info(self) -> dict[str, Any]:
        return {"ports": {d.name: d.port for d in self.devices}, "control": self.control_port,
                "ptys": {d.name: d.pty for d in self.devices if d.pty},
                "model": self.model.to_json(), "model_text": self.model.describe()}

    def stats(self) -> dict[str, Any]:
        assert self.link is not None
        return {"open": [a.stats() for a in self.link.connections],
                "closed": self.link.closed_stats[-20:]}

    async def _control_client(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        assert self.link is not None
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    cmd = req.get("cmd")
                    if cmd == "outage":
                        self.link.start_outage(float(req["seconds"]))
                        reply: dict[str, Any] = {"ok": True}
                    elif cmd == "stats":
                        reply = {"ok": True, **self.stats()}
                    elif cmd == "model":
                        reply = {"ok": True, "model": self.model.to_json()}
                    else:
                        reply = {"ok": False, "error": f"unknown cmd {cmd!r}"}
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": str(e)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for d in self.devices:
            if d.server is not None:
                d.server.close()
            if d.active is not None and d.active.transport is not None:
                d.active.transport.close()
        if self.control is not None:
            self.control.close()
        if self.link is not None:
            for a in list(self.link.connections):
                a.close()


async def control_request(port: int, request: dict[str, Any],
                          host: str = "127.0.0.1") -> dict[str, Any]:
    """One request to an air process's control port."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        reply: dict[str, Any] = json.loads(await reader.readline())
        return reply
    finally:
        writer.close()


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="link model JSON file (fields of LinkModel)")
    p.add_argument("--model-json", help="link model as a JSON string")
    p.add_argument("--phy", choices=["1M", "2M"])
    p.add_argument("--interval-ms", type=float)
    p.add_argument("--no-dle", action="store_true", help="27-byte PDUs")
    p.add_argument("--pdus-per-event", type=int, help="max exchanges per event (0: no cap)")
    p.add_argument("--per", type=float, help="packet error rate")
    p.add_argument("--supervision-timeout", type=float, help="seconds")
    p.add_argument("--acl-buffers", type=int)
    p.add_argument("--outage", action="append", default=[], metavar="START:DURATION",
                   help="outage window, seconds from the first connection (repeatable)")


def model_from_args(args: argparse.Namespace) -> LinkModel:
    data: dict[str, Any] = json.loads(args.model.read_text()) if args.model else {}
    if args.model_json:
        data.update(json.loads(args.model_json))
    for key, attr in (("phy", "phy"), ("interval_ms", "interval_ms"),
                      ("max_pdus_per_event", "pdus_per_event"), ("per", "per"),
                      ("supervision_timeout_s", "supervision_timeout"),
                      ("acl_buffers", "acl_buffers")):
        if getattr(args, attr) is not None:
            data[key] = getattr(args, attr)
    if args.no_dle:
        data["dle"] = False
    if args.outage:
        data["outages"] = [tuple(float(x) for x in o.split(":")) for o in args.outage]
    return LinkModel.from_json(data)


async def _serve(args: argparse.Namespace) -> int:
    air = Air(model_from_args(args), [n for n in args.devices.split(",") if n], args.pty)
    await air.start()
    info = air.info()
    print(json.dumps(info), flush=True)
    if args.ports_file:
        args.ports_file.write_text(json.dumps(info))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await air.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.air", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="hub,host", help="comma-separated device names")
    p.add_argument("--ports-file", type=Path, help="also write the port JSON here")
    p.add_argument("--pty", action="append", default=[], metavar="DEVICE",
                   help="also expose this device on a pseudo-terminal (a UART-attached "
                        "controller: serial:/dev/pts/N,3000000,rtscts)")
    p.add_argument("-v", "--verbose", action="store_true")
    add_model_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("bumble").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
