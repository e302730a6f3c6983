"""The simulated radio of the virtual air: a Bumble LocalLink whose controllers deliver ACL data
only inside simulated connection events (hil.radio_model: PHY air time, interval, PDUs per
event, packet errors, outages, supervision timeout → reason 0x08 on both sides).

Stock Bumble controllers hand HCI credits back at once. ``ShapedController`` instead holds every
ACL packet until a simulated connection event carries it, so the real HCI flow control of the
attached stacks throttles them to the modelled radio. ``AirLink`` joins the controllers and runs
one ``AirConnection`` engine per connection. hil.air exposes the controllers over TCP/pty.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from bumble import hci
from bumble.controller import Connection, Controller
from bumble.core import PhysicalTransport
from bumble.link import LocalLink

from hil.radio_model import LinkModel, exchange_time_us, fragments

log = logging.getLogger(__name__)

REASON_SUPERVISION_TIMEOUT = 0x08
# When the air process itself was descheduled (a shared machine), the connection events it
# missed are run late, up to this many: the radio's clock does not stop for our CPU.
MAX_CATCH_UP_EVENTS = 16


class ShapedController(Controller):
    """A Bumble controller with DLE, PHY update and HCI credits paced by the air model."""

    def __init__(self, name: str, link: AirLink) -> None:
        super().__init__(name, link=link)
        model = link.model
        self.air = link
        self.dead = False
        self.le_acl_data_packet_length = 251
        self.total_num_le_acl_data_packets = model.acl_buffers
        self.supported_max_tx_octets = model.max_octets
        self.supported_max_rx_octets = model.max_octets
        self.supported_max_tx_time = 2120 if model.dle else 328
        self.supported_max_rx_time = self.supported_max_tx_time

    # -- host → controller data: held for the connection events
    def on_hci_acl_data_packet(self, packet: hci.HCI_AclDataPacket) -> None:
        conn = self.find_le_connection_by_handle(packet.connection_handle)
        air = self.air.find(self, conn) if conn else None
        if air is None:
            log.warning("%s: ACL for unknown handle 0x%04X", self.name, packet.connection_handle)
            return
        air.enqueue(self, packet)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if not self.dead:
            super().send_hci_packet(packet)

    # -- commands the stock controller lacks
    def on_hci_le_set_data_length_command(
        self, command: hci.HCI_LE_Set_Data_Length_Command
    ) -> hci.HCI_StatusAndConnectionHandleReturnParameters:
        conn = self.find_le_connection_by_handle(command.connection_handle)
        air = self.air.find(self, conn) if conn else None
        if air is None:
            return hci.HCI_StatusAndConnectionHandleReturnParameters(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=command.connection_handle)
        octets = max(27, min(int(command.tx_octets), self.air.model.max_octets))
        asyncio.get_running_loop().call_soon(air.set_data_length, octets)
        return hci.HCI_StatusAndConnectionHandleReturnParameters(
            status=hci.HCI_ErrorCode.SUCCESS, connection_handle=command.connection_handle)

    def on_hci_le_set_phy_command(self, command: hci.HCI_LE_Set_PHY_Command) -> None:
        conn = self.find_le_connection_by_handle(command.connection_handle)
        air = self.air.find(self, conn) if conn else None
        if air is None:
            self._send_hci_command_status(
                hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, command.op_code)
            return
        self._send_hci_command_status(hci.HCI_COMMAND_STATUS_PENDING, command.op_code)
        want_2m = bool(int(command.tx_phys) & 0x02) or bool(int(command.rx_phys) & 0x02)
        phy = "2M" if (want_2m and self.air.model.phy == "2M") else "1M"
        asyncio.get_running_loop().call_later(2 * air.interval_s, air.set_phy, phy)

    def on_hci_le_read_phy_command(
        self, command: hci.HCI_LE_Read_PHY_Command
    ) -> hci.HCI_LE_Read_PHY_ReturnParameters:
        conn = self.find_le_connection_by_handle(command.connection_handle)
        air = self.air.find(self, conn) if conn else None
        phy = hci.Phy.LE_2M if (air and air.phy == "2M") else hci.Phy.LE_1M
        return hci.HCI_LE_Read_PHY_ReturnParameters(
            status=hci.HCI_ErrorCode.SUCCESS, connection_handle=command.connection_handle,
            tx_phy=phy, rx_phy=phy)

    # -- connection life cycle hooks
    def on_le_connect_ind(self, packet: Any) -> None:
        super().on_le_connect_ind(packet)
        conn = self.le_connections.get(packet.initiator_address)
        if conn is not None:
            self.air.on_connected(self, conn)

    def on_le_disconnected(self, connection: Connection, reason: int) -> None:
        if connection.peer_address in self.le_connections:
            super().on_le_disconnected(connection, reason)
        self.air.on_disconnected(self, connection)

    def on_le_encryption_change(self, connection: Connection, status: int) -> None:
        super().on_le_encryption_change(connection, status)
        air = self.air.find(self, connection)
        if air is not None and status == hci.HCI_ErrorCode.SUCCESS:
            air.encrypted = True

    def go_silent(self) -> None:
        """The host behind this controller is gone: stop radiating (connections time out)."""
        self.dead = True
        self.le_legacy_advertiser.stop()
        for adv_set in self.advertising_sets.values():
            adv_set.stop()
        self.le_scan_enable = False
        self.pending_le_connection = None


@dataclass
class _Side:
    ctrl: ShapedController
    conn: Connection
    queue: collections.deque[hci.HCI_AclDataPacket] = field(default_factory=collections.deque)
    frags_left: list[int] = field(default_factory=list)
    delivered_packets: int = 0
    delivered_bytes: int = 0
    retransmissions: int = 0
    # events that ended with data still queued (the radio, not the sender, was the limit) and
    # what they carried: throughput in simulated time, whatever the CPU did
    saturated_events: int = 0
    saturated_packets: int = 0
    saturated_bytes: int = 0


class AirConnection:
    """One LE connection between two controllers, driven by simulated connection events."""

    def __init__(self, link: AirLink, central: _Side, peripheral: _Side) -> None:
        self.link = link
        self.model = link.model
        self.sides = (central, peripheral)
        self.phy = "1M"
        self.tx_octets = 27
        self.encrypted = False
        self.interval_s = self.model.interval_ms / 1000.0
        loop = asyncio.get_running_loop()
        self.created = loop.time()
        self.last_heard = self.created
        self.events = 0
        self.silent_events = 0          # events in an outage (or with a dead peer)
        self.silence_s = 0.0            # simulated silence when a supervision timeout fired
        self.closed = False
        self.assemblers = [hci.HCI_AclDataPacketAssembler(functools.partial(self._deliver, i))
                           for i in range(2)]
        self.task = loop.create_task(self._run(), name=f"air-conn-{central.ctrl.name}")

    def involves(self, ctrl: Controller, conn: Connection) -> bool:
        return any(s.ctrl is ctrl and s.conn is conn for s in self.sides)

    def enqueue(self, ctrl: Controller, packet: hci.HCI_AclDataPacket) -> None:
        side = self.sides[0] if self.sides[0].ctrl is ctrl else self.sides[1]
        side.queue.append(packet)

    def set_data_length(self, octets: int) -> None:
        self.tx_octets = octets
        time_us = (octets + 14) * 8        # 1M PHY time incl. MIC, as controllers report it
        for s in self.sides:
            s.ctrl.send_hci_packet(hci.HCI_LE_Data_Length_Change_Event(
                connection_handle=s.conn.handle, max_tx_octets=octets, max_tx_time=time_us,
                max_rx_octets=octets, max_rx_time=time_us))

    def set_phy(self, phy: str) -> None:
        if self.closed:
            return
        self.phy = phy
        code = hci.Phy.LE_2M if phy == "2M" else hci.Phy.LE_1M
        for s in self.sides:
            s.ctrl.send_hci_packet(hci.HCI_LE_PHY_Update_Complete_Event(
                status=hci.HCI_ErrorCode.SUCCESS, connection_handle=s.conn.handle,
                tx_phy=code, rx_phy=code))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.task.cancel()

    # -- the connection-event engine
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time() + self.interval_s
        while not self.closed:
            delay = next_t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            due = int((now - next_t) / self.interval_s) + 1
            for k in range(min(due, MAX_CATCH_UP_EVENTS)):
                if self.closed:
                    return
                self._event(next_t + k * self.interval_s)
            next_t += due * self.interval_s

    def _event(self, t: float) -> None:
        self.events += 1
        central, peripheral = self.sides
        if self.link.in_outage(t) or central.ctrl.dead or peripheral.ctrl.dead:
            self.silent_events += 1
            if t - self.last_heard >= self.model.supervision_timeout_s:
                self.silence_s = t - self.last_heard
                self.link.supervision_timeout(self)
            return
        self.last_heard = t
        budget = self.model.budget_us
        exchanges = 0
        blocked = [False, False]
        completed = [0, 0]
        carried = [0, 0]
        while not (self.model.max_pdus_per_event and exchanges >= self.model.max_pdus_per_event):
            sizes = [self._next_fragment(i, budget, blocked) for i in range(2)]
            if sizes[0] is None and sizes[1] is None:
                break
            cost = exchange_time_us(sizes[0] or 0, sizes[1] or 0, self.phy, self.encrypted)
            if cost > budget:
                break
            budget -= cost
            exchanges += 1
            for i, size in enumerate(sizes):
                if size is None:
                    continue
                side = self.sides[i]
                if self.model.per and self.link.rng.random() < self.model.per:
                    side.retransmissions += 1          # not acknowledged: sent again
                    continue
                side.frags_left.pop(0)
                if not side.frags_left:
                    packet = side.queue.popleft()
                    side.delivered_packets += 1
                    side.delivered_bytes += len(packet.data)
                    carried[i] += len(packet.data)
                    completed[i] += 1
                    self.assemblers[i].feed_packet(packet)
        for i, n in enumerate(completed):
            s = self.sides[i]
            if s.queue:
                s.saturated_events += 1
                s.saturated_packets += n
                s.saturated_bytes += carried[i]
            if n:
                s = self.sides[i]
                s.ctrl.send_hci_packet(hci.HCI_Number_Of_Completed_Packets_Event(
                    connection_handles=[s.conn.handle], num_completed_packets=[n]))

    def _next_fragment(self, i: int, budget: float, blocked: list[bool]) -> int | None:
        side = self.sides[i]
        if blocked[i] or not side.queue:
            return None
        if not side.frags_left:
            frags = fragments(len(side.queue[0].data), self.tx_octets)
            whole = sum(exchange_time_us(0, f, self.phy, self.encrypted) for f in frags)
            if whole > budget:             # an ACL packet starts only if it fits this event
                blocked[i] = True
                return None
            side.frags_left = frags
        return side.frags_left[0]

    def _deliver(self, i: int, pdu: bytes) -> None:
        """A whole L2CAP PDU from side i reached the other side's host."""
        dst = self.sides[1 - i]
        if dst.conn.peer_address in dst.ctrl.le_connections:
            dst.ctrl.send_hci_packet(
                hci.HCI_AclDataPacket(dst.conn.handle, 2, 0, len(pdu), pdu))

    def stats(self) -> dict[str, Any]:
        c, p = self.sides
        now = asyncio.get_running_loop().time()
        return {
            "central": c.ctrl.name, "peripheral": p.ctrl.name, "phy": self.phy,
            "tx_octets": self.tx_octets, "encrypted": self.encrypted, "events": self.events,
            "age_s": now - self.created, "interval_s": self.interval_s,
            "silent_events": self.silent_events, "silence_s": self.silence_s,
            "central_to_peripheral": self._side_stats(c),
            "peripheral_to_central": self._side_stats(p),
        }

    @staticmethod
    def _side_stats(s: _Side) -> dict[str, int]:
        return {"packets": s.delivered_packets, "bytes": s.delivered_bytes,
                "retransmissions": s.retransmissions, "queued": len(s.queue),
                "saturated_events": s.saturated_events,
                "saturated_packets": s.saturated_packets,
                "saturated_bytes": s.saturated_bytes}


class AirLink(LocalLink):  # type: ignore[misc]
    """The LocalLink with a radio model between its controllers."""

    def __init__(self, model: LinkModel) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model = model
        self.rng = random.Random(model.seed)
        self.connections: list[AirConnection] = []
        self.closed_stats: list[dict[str, Any]] = []
        self.outages: list[tuple[float, float]] = []   # absolute windows (loop time)
        self._first_connection = True

    def in_outage(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.outages)

    def start_outage(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.outages.append((now, now + seconds))
        log.info("outage for %.3f s", seconds)

    def send_advertising_pdu(self, sender_controller: Controller, packet: Any) -> None:
        if not self.in_outage(asyncio.get_running_loop().time()):   # an outage blocks all
            super().send_advertising_pdu(sender_controller, packet)

    def find_le_controller(self, address: hci.Address) -> Controller | None:
        live = [c for c in self.controllers if not getattr(c, "dead", False)]
        for c in live:
            for connection in c.le_connections.values():
                if connection.self_address == address:
                    return c
        for c in live:
            if address in (c.random_address, c.public_address):
                return c
        return None

    def find(self, ctrl: Controller, conn: Connection | None) -> AirConnection | None:
        for air in self.connections:
            if conn is not None and air.involves(ctrl, conn):
                return air
        return None

    def on_connected(self, peripheral: ShapedController, p_conn: Connection) -> None:
        for c in self.controllers:
            central = c.le_connections.get(p_conn.self_address)
            if central is not None and central.self_address == p_conn.peer_address \
                    and not getattr(c, "dead", False) and c is not peripheral:
                assert isinstance(c, ShapedController)
                if self._first_connection:      # model outages count from here
                    self._first_connection = False
                    t0 = asyncio.get_running_loop().time()
                    self.outages += [(t0 + a, t0 + a + d) for a, d in self.model.outages]
                air = AirConnection(self, _Side(c, central), _Side(peripheral, p_conn))
                self.connections.append(air)
                # the connection runs at the model's interval and supervision timeout
                for s in air.sides:
                    s.ctrl.send_hci_packet(hci.HCI_LE_Connection_Update_Complete_Event(
                        status=hci.HCI_ErrorCode.SUCCESS, connection_handle=s.conn.handle,
                        connection_interval=round(self.model.interval_ms / 1.25),
                        peripheral_latency=0,
                        supervision_timeout=min(3200, round(
                            self.model.supervision_timeout_s * 100))))
                log.info("connection %s → %s", c.name, peripheral.name)
                return
        log.warning("connection to %s without a central", peripheral.name)

    def on_disconnected(self, ctrl: Controller, conn: Connection) -> None:
        air = self.find(ctrl, conn)
        if air is not None:
            air.close()
            self.connections.remove(air)
            self.closed_stats.append(air.stats())
        self._reap()

    def supervision_timeout(self, air: AirConnection) -> None:
        log.info("supervision timeout: %s ↔ %s", air.sides[0].ctrl.name, air.sides[1].ctrl.name)
        air.close()
        if air in self.connections:
            self.connections.remove(air)
            self.closed_stats.append(air.stats())
        for s in air.sides:
            if s.conn.peer_address in s.ctrl.le_connections:
                Controller.on_le_disconnected(s.ctrl, s.conn, REASON_SUPERVISION_TIMEOUT)
        self._reap()

    def _reap(self) -> None:
        for c in list(self.controllers):
            if getattr(c, "dead", False) and not c.le_connections:
                self.remove_controller(c)

    def send_acl_data(self, sender_controller: Controller, destination_address: hci.Address,
                      transport: PhysicalTransport, data: bytes) -> None:
        log.warning("unshaped ACL data from %s dropped", sender_controller.name)
