"""The hub's GATT profile: one 128-bit service, three characteristics (DESIGN §5, docs/wire.md).

- DATA (notify): framed packet chunks, one per notification, at most ATT MTU − 3 bytes.
- CONTROL (write with response): one command per write.
- STATUS (read, notify): a small JSON object (state, pairing window, link parameters).

Part of the wire format: the hub's BLE uplink and the host's receiver both import it.
"""

from __future__ import annotations

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
