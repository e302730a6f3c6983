"""``hubctl pair``: bond this host with a hub (LE Secure Connections) while the hub's pairing
window is open (``hub run --ble-pairing-window S``, or its provisioning file). Afterwards the
host may subscribe to DATA and write CONTROL; the bond survives restarts on both sides.

    hubctl pair --name ihub-01                                # the OS Bluetooth adapter
    hubctl pair --name ihub-01 --hci tcp-client:127.0.0.1:P  # the virtual radio (hil/air.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from hub.wire import gatt


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=gatt.DEFAULT_HUB_NAME, help="the hub's advertised name")
    p.add_argument("--hci", metavar="TRANSPORT",
                   help="Bumble HCI transport instead of the OS adapter (virtual radio)")
    p.add_argument("--keystore", type=Path, default=Path("host_bonds.json"),
                   help="with --hci: where this host keeps its bonds")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--unpair", action="store_true", help="forget the bond instead")


async def pair(name: str, backend: Any, timeout: float = 10.0,
               unpair: bool = False) -> dict[str, Any]:
    """Connects with pairing and returns the hub's STATUS as seen over the bonded link."""
    skw: dict[str, Any] = {"backend": backend.scanner} if backend is not None else {}
    ckw: dict[str, Any] = {"backend": backend.client} if backend is not None else {}
    try:
        dev = await BleakScanner.find_device_by_name(name, timeout=timeout, **skw)
        if dev is None:
            raise BleakError(f"hub {name!r} not found")
        client = BleakClient(dev, pair=not unpair, timeout=timeout, **ckw)
        if unpair:
            await client.unpair()
            return {"unpaired": dev.address}
        await client.connect()
        try:
            status: dict[str, Any] = json.loads(
                bytes(await client.read_gatt_char(gatt.STATUS_UUID)))
        finally:
            await client.disconnect()
        status["address"] = dev.address
        return status
    finally:
        if backend is not None:
            await backend.close()


def run(args: argparse.Namespace) -> int:
    backend = None
    if args.hci:
        from host_tools.bleak_bumble import BumbleBackend

        backend = BumbleBackend(args.hci, keystore=args.keystore)
    try:
        status = asyncio.run(pair(args.name, backend, args.timeout, args.unpair))
    except BleakError as e:
        print(f"hubctl pair: {e} (is the hub's pairing window open?)")
        return 1
    print(json.dumps(status))
    return 0 if args.unpair or (status.get("bonded") and status.get("encrypted")) else 1
