"""Drives the air's connection-event engine (hil.air_link.AirConnection) directly, without sockets:
two shaped controllers with recording hosts, one connection, events run at chosen times.
Shared by tests/test_air_engine.py and tests/fuzz/fuzz_ble_air.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bumble import hci
from bumble.controller import Connection
from bumble.core import PhysicalTransport

from hil.air_link import AirConnection, AirLink, ShapedController, _Side
from hil.radio_model import LinkModel


@dataclass
class RecordingHost:
    acl: list[bytes] = field(default_factory=list)
    completed: int = 0
    disconnect_reasons: list[int] = field(default_factory=list)

    def on_packet(self, packet: bytes) -> None:
        p = hci.HCI_Packet.from_bytes(packet)
        if isinstance(p, hci.HCI_AclDataPacket):
            self.acl.append(bytes(p.data))
        elif isinstance(p, hci.HCI_Number_Of_Completed_Packets_Event):
            self.completed += sum(p.num_completed_packets)
        elif isinstance(p, hci.HCI_Disconnection_Complete_Event):
            self.disconnect_reasons.append(int(p.reason))


@dataclass
class Pair:
    link: AirLink
    air: AirConnection
    central: RecordingHost
    peripheral: RecordingHost
    ctrls: tuple[ShapedController, ShapedController]

    def send(self, side: int, payload: bytes) -> bytes:
        """One L2CAP PDU (ATT CID) of ``payload`` as one HCI ACL packet; returns the PDU."""
        data = len(payload).to_bytes(2, "little") + b"\x04\x00" + payload
        ctrl = self.ctrls[side]
        conn = self.air.sides[side].conn
        ctrl.on_hci_acl_data_packet(hci.HCI_AclDataPacket(conn.handle, 0, 0, len(data), data))
        return data


def make_pair(model: LinkModel) -> Pair:
    """Must be called inside a running event loop; the engine's own task is cancelled so the
    caller runs events with ``pair.air._event(t)``."""
    link = AirLink(model)
    hosts = (RecordingHost(), RecordingHost())
    ctrls = (ShapedController("central", link), ShapedController("peripheral", link))
    addrs = (hci.Address("F1:00:00:00:00:01"), hci.Address("F0:00:00:00:00:02"))
    conns = []
    for i, (c, h) in enumerate(zip(ctrls, hosts, strict=True)):
        c.host = h  # type: ignore[assignment]
        conn = Connection(controller=c, handle=0x40 + i,
                          role=hci.Role.CENTRAL if i == 0 else hci.Role.PERIPHERAL,
                          self_address=addrs[i], peer_address=addrs[1 - i], link=link,
                          transport=PhysicalTransport.LE,
                          link_type=hci.HCI_Connection_Complete_Event.LinkType.ACL)
        c.le_connections[addrs[1 - i]] = conn
        conns.append(conn)
    air = AirConnection(link, _Side(ctrls[0], conns[0]), _Side(ctrls[1], conns[1]))
    air.task.cancel()
    link.connections.append(air)
    return Pair(link, air, hosts[0], hosts[1], ctrls)


async def settle() -> None:
    """Lets the call_soon deliveries of the controllers run."""
    for _ in range(3):
        await asyncio.sleep(0)


def run_events(pair: Pair, n: int, t0: float = 0.0) -> Any:
    interval = pair.link.model.interval_ms / 1000.0
    for k in range(n):
        pair.air._event(t0 + k * interval)
