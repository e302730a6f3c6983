"""The hub's BLE command-line options. The GATT profile itself (UUIDs, MTU, addresses) is part
of the wire format: :mod:`hub.wire.gatt`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hub.wire.gatt import DEFAULT_HUB_NAME


def add_ble_arguments(p: argparse.ArgumentParser) -> None:
    """The hub's BLE options (``hub run --uplink ble:…``); no Bumble import here."""
    g = p.add_argument_group("BLE uplink (--uplink ble:TRANSPORT)")
    g.add_argument("--ble-name", default=DEFAULT_HUB_NAME, help="advertised name")
    g.add_argument("--ble-address",
                   help="random static address (keep it: hosts bond to it); default: this "
                        "install's own, made once and kept in STATE_DIR/ble_address")
    g.add_argument("--ble-keystore", type=Path,
                   help="bond keys (JSON); default STATE_DIR/ble_bonds.json")
    g.add_argument("--ble-pairing-window", type=float, default=0.0, metavar="S",
                   help="accept pairing for S seconds after start (default: closed)")
    g.add_argument("--ble-pairing-file", type=Path,
                   help="accept pairing while this file exists (provisioning)")
