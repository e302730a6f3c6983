"""``hubctl record --tcp HOST:PORT`` (or ``--ble NAME [--hci TRANSPORT]``): receive from a hub's
uplink, decode everything, check continuity and accounting, optionally configure, and write a
JSON summary. Both transports go through one path (host_tools.session over
host_tools.hublink): the same reconnects, reassembly, time sync and command results.

Stops after ``--duration`` seconds, (``--until-final``) when the hub closes the link after its
final shed report (clean shutdown), or on SIGINT/SIGTERM; reconnects when the hub goes away
(restart, radio outage). ``--set FIELD=VALUE`` (repeatable) sends one Configure with those
PipelineSettings fields (plus ``raw_channels=0,1,2`` and ``outage_buffer_s=…``) after the first
connect and waits for its result: a rejection prints the hub's message and exits 1.
``--templates FILE`` then loads a templates file (``hubctl calibrate``) into the hub's online
sorter, all its fields (host_tools.templates_wire), once the implant streams. No
connection within ``--connect-timeout`` (or ``--duration``) exits non-zero.

The recording sink (host_tools.nwb_record: ``--packets-out`` packet log, ``--nwb`` conversion on
close, ``--status`` live view) is one more observer of the session, so it sees the same chunks,
connections and commands on both transports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from host_tools import nwb_record
from host_tools.hublink import HubLink, LinkError, add_link_arguments, open_link
from host_tools.packetlog import Link
from host_tools.receiver import Receiver
from host_tools.session import LinkObserver, RecordResult, record
from hub.argtypes import positive
from hub.dsp.sorting import TemplateSet
from hub.wire import pb
from hub.wire import settings as wire_settings

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p)
    p.add_argument("--duration", type=positive, help="stop after this many seconds")
    p.add_argument("--until-final", action="store_true",
                   help="stop when the hub closes the link after its final report")
    p.add_argument("--connect-timeout", type=positive, default=30.0,
                   help="seconds to wait for the first connection (then exit non-zero)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="configure the hub after connecting (repeatable): "
                        + "; ".join(s.describe() for s in wire_settings.SETTINGS.values())
                        + "; raw_channels=0,1,2")
    p.add_argument("--templates", type=Path, metavar="FILE",
                   help="templates file (hubctl calibrate) to load into the hub's online "
                        "sorter after --set (e.g. --set sort=true), once the implant streams; "
                        "every field of the file travels (noise σ, basis, alignment, rate): "
                        "the hub sorts as `hubctl sort --templates FILE` would")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--raw-out", type=Path,
                   help="decoded raw broadband (.npz: chN = samples, chN_first = block starts, "
                        "chN_len = block lengths)")
    p.add_argument("--ready-file", type=Path,
                   help="written once connected (and configured, with --set)")
    nwb_record.add_arguments(p)


def configure_command(settings: list[str], request_id: int,
                      n_channels: int | None = None) -> pb.Command:
    """A Configure from FIELD=VALUE strings: the settings schema's parser
    (hub.wire.settings.configure_command; raises SettingError naming the field)."""
    return wire_settings.configure_command(settings, request_id, n_channels)


def save_raw(path: Path, rx: Receiver) -> None:
    import numpy as np

    arrays = {}
    for ch, blocks in rx.raw_blocks.items():
        arrays[f"ch{ch}"] = np.concatenate([b for _, b in blocks])
        arrays[f"ch{ch}_first"] = np.array([f for f, _ in blocks], np.int64)
        arrays[f"ch{ch}_len"] = np.array([b.size for _, b in blocks], np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """Exit 0: recorded (and accounted, when the hub's final report came); 1: unaccounted items,
    or a command the hub rejected or never answered (its message printed); 2 (hubctl's error
    path): no hub within ``--connect-timeout``, or bad arguments."""
    # malformed --set values fail here, before connecting (raw_channels needs the hub's count)
    configure_command([x for x in args.set if not x.startswith("raw_channels")], 0)
    templates = TemplateSet.load(args.templates) if args.templates else None  # read before too
    link = open_link(args.tcp, args.ble, hci=args.hci, keystore=args.keystore, pair=args.pair,
                     scan_timeout=args.connect_timeout)
    sink = nwb_record.RecordingSink(args, Link.BLE if args.ble else Link.TCP)
    observers: list[LinkObserver] = [SinkObserver(sink, _peer(args))]
    if args.ready_file:
        observers.append(ReadyFile(args.ready_file, configured=not args.set))
    try:
        res = asyncio.run(_record(link, args, observers, sink, templates))
    except LinkError:                  # HubUnreachable (an OSError): hubctl exits 2
        sink.nwb = None                # nothing to convert; the packet log is closed
        sink.finish({})
        raise
    s = res.summary
    if args.raw_out is not None:
        save_raw(args.raw_out, res.session.receiver)
    nwb = sink.finish(s)
    if nwb is not None:
        s["nwb"] = nwb
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(s, indent=1))
    if res.failure:
        print(f"hubctl record: {res.failure}", file=sys.stderr)
        return 1
    print(json.dumps({k: s[k] for k in ("sessions", "classes", "latency_ms", "link")}, indent=1))
    bad = [k for k, v in s["classes"].items() if v["unaccounted"] != 0]
    if bad and s["final_report_seen"]:
        log.error("unaccounted items in: %s", ", ".join(bad))
        return 1
    return 1 if nwb is not None and "error" in nwb else 0


def _peer(args: argparse.Namespace) -> dict[str, Any]:
    """What the packet log's CONNECT records say about the hub."""
    if args.ble:
        return {"name": args.ble}
    host, port = args.tcp
    return {"address": f"{host}:{port}"}


class SinkObserver(LinkObserver):
    """The recording sink (packet log, live status; NWB on close) on the facade: every chunk,
    connection change, command sent and decoded packet of either transport."""

    def __init__(self, sink: nwb_record.RecordingSink, peer: dict[str, Any]) -> None:
        self.sink, self.peer = sink, peer

    def on_chunk(self, host_time_ns: int, chunk: bytes) -> None:
        self.sink.on_chunk(chunk, host_time_ns)

    def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None:
        self.sink.on_envelope(env, host_time_ns)

    def on_link(self, host_time_ns: int, state: str) -> None:
        if state == "connected":
            self.sink.on_connect(self.peer)
        else:
            self.sink.on_disconnect()

    def on_command(self, host_time_ns: int, cmd: pb.Command) -> None:
        self.sink.on_command(cmd)


class ReadyFile(LinkObserver):
    """``--ready-file``: written once connected (and, with ``--set``, configured)."""

    def __init__(self, path: Path, configured: bool) -> None:
        self.path, self.configured, self.connected = path, configured, False

    def on_link(self, host_time_ns: int, state: str) -> None:
        if state == "connected" and not self.connected:
            self.connected = True
            self._maybe_write()

    def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None:
        if not self.configured and env.WhichOneof("payload") == "result" \
                and env.result.command == "configure" and env.result.code == pb.RESULT_OK:
            self.configured = True
            self._maybe_write()

    def _maybe_write(self) -> None:
        if self.connected and self.configured:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid()}))
            tmp.replace(self.path)


async def _record(link: HubLink, args: argparse.Namespace, observers: list[LinkObserver],
                  sink: nwb_record.RecordingSink,
                  templates: TemplateSet | None = None) -> RecordResult:
    """record() with SIGINT/SIGTERM ending the recording cleanly (the summary is written) and
    the sink ticked (packet log flushed, live status refreshed) a few times a second."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ticker = asyncio.create_task(_tick(sink))
    try:
        return await record(link, duration=args.duration, until_final=args.until_final,
                            settings=args.set, connect_timeout=args.connect_timeout,
                            observers=observers, keep_raw=args.raw_out is not None, stop=stop,
                            templates=templates)
    finally:
        ticker.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _tick(sink: nwb_record.RecordingSink, period_s: float = 0.2) -> None:
    while True:
        sink.tick()
        await asyncio.sleep(period_s)
