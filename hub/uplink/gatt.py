"""The hub's GATT profile: one 128-bit service, three characteristics (DESIGN §5).

- DATA (notify): framed packet chunks, one per notification, at most ATT MTU − 3 bytes.
- CONTROL (write with response): one command per write.
- STATUS (read, notify): a small JSON object (state, pairing window, link parameters).

The host imports these UUIDs from here (host_tools may import hub; never the reverse).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SERVICE_UUID = "5e1f0001-8b5c-4c1e-9e4a-3f0c2d1b7a60"
DATA_UUID = "5e1f0002-8b5c-4c1e-9e4a-3f0c2d1b7a60"
CONTROL_UUID = "5e1f0003-8b5c-4c1e-9e4a-3f0c2d1b7a60"
STATUS_UUID = "5e1f0004-8b5c-4c1e-9e4a-3f0c2d1b7a60"
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"

#: The ATT MTU and LL data length the hub asks for (payload per notification = MTU − 3).
ATT_MTU = 247
DATA_LENGTH = 251
DATA_LENGTH_TIME_US = 2120

#: ATT error codes a central may see.
ATT_INSUFFICIENT_AUTHENTICATION = 0x05

#: A random static address has its two top bits set.
DEFAULT_HUB_ADDRESS = "F0:5E:1F:00:00:01"
DEFAULT_HUB_NAME = "ihub-01"


def add_ble_arguments(p: argparse.ArgumentParser) -> None:
    """The hub's BLE options (``hub run --uplink ble:…``); no Bumble import here."""
    g = p.add_argument_group("BLE uplink (--uplink ble:TRANSPORT)")
    g.add_argument("--ble-name", default=DEFAULT_HUB_NAME, help="advertised name")
    g.add_argument("--ble-address", default=DEFAULT_HUB_ADDRESS,
                   help="random static address (keep it: hosts bond to it)")
    g.add_argument("--ble-keystore", type=Path,
                   help="bond keys (JSON); default STATE_DIR/ble_bonds.json")
    g.add_argument("--ble-pairing-window", type=float, default=0.0, metavar="S",
                   help="accept pairing for S seconds after start (default: closed)")
    g.add_argument("--ble-pairing-file", type=Path,
                   help="accept pairing while this file exists (provisioning)")
