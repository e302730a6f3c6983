"""``hubctl lsl``: publish a live hub's feature bins, spikes, unit events and (with
``--decoder``) the decoded cursor as Lab Streaming Layer outlets (``host_tools/lsl_outlets.py``).

    hubctl lsl --tcp HOST:PORT | --ble NAME [--hci T] [--prefix ihub] [--duration S]
               [--decoder DECODER.npz --features tc|units|hg] [--set FIELD=VALUE …] [--json OUT]

liblsl reads ``LSLAPICFG``; when it is unset this command uses ``host_tools/lsl_api.cfg``
(ResolveScope = machine, KnownPeers = {127.0.0.1}, no IPv6): discovery and data stay on this
machine. Point LSLAPICFG at a config of your own to publish to the lab network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from host_tools.decoding.live import LiveLink, add_link_arguments

log = logging.getLogger(__name__)
LSL_CONFIG = Path(__file__).resolve().parent / "lsl_api.cfg"


def use_local_config() -> str:
    """Sets LSLAPICFG to the machine-local config unless the user chose one; returns it."""
    return os.environ.setdefault("LSLAPICFG", str(LSL_CONFIG))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_link_arguments(p)
    p.add_argument("--prefix", default="ihub", help="stream name prefix")
    p.add_argument("--decoder", type=Path, help="decoder file: also publish the cursor")
    p.add_argument("--features", default="tc", choices=("tc", "units", "hg"),
                   help="what the decoder reads")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", type=Path, help="write what was published here")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from host_tools.decoding import load_decoder
    from host_tools.lsl_outlets import LslPublisher

    decoder = load_decoder(args.decoder) if args.decoder else None
    pub: LslPublisher | None = None
    link: LiveLink

    def on_envelope(env: Any, t_ns: int) -> None:
        assert pub is not None
        pub.on_envelope(env, t_ns)

    link = LiveLink(args, on_envelope)
    pub = LslPublisher(args.prefix, lambda s: int(link.timesync.to_host_ns(s)), decoder,
                       args.features)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    t0 = time.monotonic()
    try:
        while not task.done():
            if args.duration is not None and time.monotonic() - t0 >= args.duration:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {"published": pub.counts, "outlets": sorted(pub.outlets),
            "time_sync": link.timesync.summary(), "lslapicfg": os.environ.get("LSLAPICFG")}


def run(args: argparse.Namespace) -> int:
    use_local_config()
    try:
        s = asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
    text = json.dumps(s, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)
    return 0
