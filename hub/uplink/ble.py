"""The BLE uplink: a GATT peripheral on Bumble (DESIGN §5).

One central at a time. The HCI transport is a Bumble transport string: ``serial:/dev/ttyS1,
3000000,rtscts`` (a controller chip on a UART), ``hci-socket:0`` (a kernel adapter) or
``tcp-client:127.0.0.1:PORT`` (the virtual air, hil/air.py). The hub advertises its name and
service UUID, and again after every disconnect.

Flow control: ``send`` keeps at most ``max_in_flight`` ACL packets of the connection queued or
in the controller, waiting on the controller's Number-Of-Completed-Packets (Bumble's
DataPacketQueue 'flow' event). The scheduler above therefore sees the link's real throughput;
nothing piles up inside the stack.

Security: CONTROL writes and DATA subscriptions (CCCD writes) need an encrypted link whose peer
holds an LE Secure Connections bond with this hub; otherwise the ATT request fails with
Insufficient Authentication (0x05). Pairing is accepted only while the pairing window is open:
``open_pairing_window(seconds)``, or while the provisioning file ``pairing_file`` exists. Bonds
are kept in a Bumble JSON keystore file on the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble import att, hci
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.gatt import Characteristic, CharacteristicValue, Descriptor, Service
from bumble.keys import JsonKeyStore
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport

from hub.uplink.base import CommandHandler, Uplink
from hub.wire import gatt

log = logging.getLogger(__name__)


@dataclass
class BleConfig:
    """How the hub's BLE side is set up (part of the hub configuration)."""

    transport: str = "tcp-client:127.0.0.1:9000"
    name: str = gatt.DEFAULT_HUB_NAME
    address: str = gatt.DEFAULT_HUB_ADDRESS
    keystore: Path = Path("ble_bonds.json")
    pairing_file: Path | None = None       # pairing allowed while this file exists
    pairing_window_s: float = 0.0          # pairing allowed this long after start
    payload_size: int = gatt.ATT_MTU - 3   # bytes per notification (the daemon's chunks)
    max_in_flight: int = 0                 # ACL packets queued + in flight (0: the
                                           # controller's LE ACL buffer count)
    advertising_interval_ms: float = 50.0
    prefer_2m_phy: bool = True


class _PairingGate(PairingDelegate):  # type: ignore[misc]
    """Just Works LE Secure Connections (the hub has no display), only while the window is open."""

    def __init__(self, uplink: BleUplink) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT)
        self.uplink = uplink

    async def accept(self) -> bool:
        ok = self.uplink.pairing_open
        log.info("pairing request %s", "accepted (window open)" if ok else "refused (closed)")
        return ok


class BleUplink(Uplink):
    """A Bumble GATT peripheral that implements the Uplink interface."""

    def __init__(self, config: BleConfig) -> None:
        super().__init__()
        self.config = config
        self.device: Device | None = None
        self._transport: Any = None
        self._on_command: CommandHandler | None = None
        self._conn: Connection | None = None
        self._subscribed = False
        self._bonded: set[str] = set()
        self._window_until = 0.0
        self._flow = asyncio.Event()
        self._connected_evt = asyncio.Event()
        self._data: Characteristic[bytes] | None = None
        self._status: Characteristic[bytes] | None = None
        self._mtu = att.ATT_DEFAULT_MTU
        self._phy = "1M"
        self._data_length = 27
        self.disconnect_reasons: list[int] = []   # link losses (not our own disconnects)
        # (ACL queue index, chunk) of notifications not yet confirmed by the controller, and
        # the chunks to send again after a link loss (at most the controller's buffer count)
        self._unacked: collections.deque[tuple[int, bytes]] = collections.deque()
        self._replay: collections.deque[bytes] = collections.deque()
        self._acked = 0
        self._flow_queue: Any = None
        self._stopping = False
        self._completions: collections.deque[float] = collections.deque(maxlen=16)
        self.stats.extra.update({"notify_wait_s": 0.0, "auth_rejects": 0.0, "pairings": 0.0,
                                 "replayed": 0.0})

    # ------------------------------------------------------------------ Uplink
    @property
    def payload_size(self) -> int:
        """Fixed for the daemon's framing; a central must negotiate MTU ≥ this + 3."""
        return self.config.payload_size

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._subscribed

    @property
    def nominal_bps(self) -> float | None:
        """What the connection parameters allow (PHY, data length, interval), assuming the
        controller fills each connection event; None before a connection."""
        conn = self._conn
        if conn is None:
            return None
        interval_us = float(conn.parameters.connection_interval) * 1000.0
        if interval_us <= 0:
            return None
        payload = min(self.config.payload_size, self._mtu - 3)
        return self._per_event(conn) * payload * 8 / (interval_us / 1e6) or None

    @property
    def address(self) -> str:
        """The HCI transport (written to the daemon's ready file)."""
        return f"ble:{self.config.transport}"

    @property
    def pairing_open(self) -> bool:
        if time.monotonic() < self._window_until:
            return True
        pf = self.config.pairing_file
        return pf is not None and pf.exists()

    def open_pairing_window(self, seconds: float) -> None:
        """Allows pairing for ``seconds`` from now (the 'button' of a real hub)."""
        self._window_until = time.monotonic() + seconds
        log.info("pairing window open for %.0f s", seconds)

    async def start(self, on_command: CommandHandler) -> None:
        self._on_command = on_command
        cfg = self.config
        self._transport = await open_transport(cfg.transport)
        dev_cfg = DeviceConfiguration(name=cfg.name, address=hci.Address(cfg.address))
        device = Device.from_config_with_hci(dev_cfg, self._transport.source,
                                             self._transport.sink)
        cfg.keystore.parent.mkdir(parents=True, exist_ok=True)
        device.keystore = JsonKeyStore(namespace=cfg.address, filename=str(cfg.keystore))
        device.pairing_config_factory = lambda _conn: PairingConfig(
            sc=True, mitm=False, bonding=True, delegate=_PairingGate(self))
        device.add_service(self._make_service())
        device.on("connection", self._on_connection)
        self.device = device
        await device.power_on()
        for name, keys in await device.keystore.get_all():
            if keys.ltk is not None:          # LE Secure Connections key
                self._bonded.add(name)
        if cfg.pairing_window_s > 0:
            self.open_pairing_window(cfg.pairing_window_s)
        await self._advertise()
        log.info("BLE uplink up on %s as %s (%s), %d bond(s)", cfg.transport, cfg.name,
                 cfg.address, len(self._bonded))

    async def send(self, chunk: bytes) -> bool:
        conn = self._conn
        if conn is None or not self._subscribed or self.device is None or self._data is None:
            self.stats.send_refused += 1
            return False
        if len(chunk) > self.config.payload_size:
            raise ValueError(f"chunk of {len(chunk)} bytes > payload size "
                             f"{self.config.payload_size}")
        # Chunks the controller never confirmed on the previous connection go first, in order.
        while self._replay:
            if not await self._notify(conn, self._replay[0]):
                self.stats.send_refused += 1
                return False
            self._replay.popleft()
            self.stats.extra["replayed"] += 1
        if not await self._notify(conn, chunk):
            self.stats.send_refused += 1
            return False
        self.stats.chunks_sent += 1
        self.stats.bytes_sent += len(chunk)
        return True

    async def _notify(self, conn: Connection, chunk: bytes) -> bool:
        """One notification, after waiting for room in the controller's ACL buffers."""
        assert self.device is not None and self._data is not None
        queue = self.device.host.get_data_packet_queue(conn.handle)
        if queue is None:
            return False
        limit = self.config.max_in_flight or queue.max_in_flight
        if queue.pending >= limit:
            t0 = time.perf_counter()
            while queue.pending >= limit:
                self._flow.clear()
                await self._flow.wait()
                if self._conn is not conn or not self._subscribed:
                    return False
            self.stats.extra["notify_wait_s"] += time.perf_counter() - t0
        await self.device.notify_subscriber(conn, self._data, chunk, force=True)
        self._unacked.append((queue.queued, chunk))
        return True

    def _per_event(self, conn: Connection) -> int:
        """Notifications one connection event carries (from PHY, data length, interval)."""
        interval_us = float(conn.parameters.connection_interval) * 1000.0
        rate, preamble = (2.0, 2) if self._phy == "2M" else (1.0, 1)
        acl = self._mtu + 4                       # one notification = one L2CAP PDU
        n_pdus = -(-acl // max(27, self._data_length))
        pdu_us = ((preamble + 4 + 2 + min(acl, self._data_length) + 4 + 3) * 8 / rate
                  + 150 + (preamble + 4 + 2 + 3) * 8 / rate + 150)
        return max(0, int(interval_us // (pdu_us * n_pdus)))

    def send_slots(self) -> int | None:
        """Room in the controller, limited to one connection event's worth: what is queued
        there is sent in order, so a deeper queue only delays urgent packets."""
        conn = self._conn
        if conn is None or self.device is None:
            return 0
        queue = self.device.host.get_data_packet_queue(conn.handle)
        if queue is None:
            return 0
        limit = self.config.max_in_flight or min(queue.max_in_flight,
                                                 max(1, self._per_event(conn)))
        return max(0, limit - queue.pending)

    def next_event_s(self) -> float | None:
        """From the completions of the last events: each arrives a transport and processing
        delay after its event, so the earliest phase among them is the closest to the
        event's real time."""
        conn = self._conn
        if conn is None or not self._completions:
            return None
        interval = float(conn.parameters.connection_interval) / 1000.0
        if interval <= 0:
            return None
        last = self._completions[-1]
        early = min(((t - last + interval / 2) % interval) - interval / 2
                    for t in self._completions)
        since = time.monotonic() - (last + early)
        return interval - since % interval

    def _on_flow(self) -> None:
        """Number-Of-Completed-Packets arrived: the controller delivered these packets (just
        after a connection event: its time marks the event phase)."""
        self._completions.append(time.monotonic())
        if self.device is not None and self._conn is not None:
            queue = self.device.host.get_data_packet_queue(self._conn.handle)
            if queue is not None:
                self._acked = queue.completed
                while self._unacked and self._unacked[0][0] <= self._acked:
                    self._unacked.popleft()
        self._flow.set()
        if self.on_flow is not None:
            self.on_flow()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        if self.connected:
            return True
        try:
            await asyncio.wait_for(self._wait_subscribed(), timeout)
        except TimeoutError:
            return False
        return True

    async def _wait_subscribed(self) -> None:
        while not self.connected:
            self._connected_evt.clear()
            await self._connected_evt.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self.device is not None:
            conn = self._conn
            if conn is not None:
                # what the controller still holds (the final report, say) goes out first: a
                # disconnect flushes the controller's buffers
                queue = self.device.host.get_data_packet_queue(conn.handle)
                if queue is not None and queue.pending:
                    try:
                        await asyncio.wait_for(queue.drain(conn.handle), 2.0)
                    except (TimeoutError, ValueError) as e:
                        log.warning("stop: %d notification(s) unconfirmed (%r)",
                                    queue.pending, e)
                try:
                    await asyncio.wait_for(conn.disconnect(), 2.0)
                except Exception as e:  # the link may already be gone
                    log.debug("disconnect at stop: %s", e)
            try:
                await asyncio.wait_for(self.device.stop_advertising(), 2.0)
            except Exception as e:
                log.debug("stop advertising: %s", e)
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        self._flow.set()

    # ------------------------------------------------------------------ GATT
    def _make_service(self) -> Service:
        cccd = Descriptor(
            gatt.CCCD_UUID, Descriptor.READABLE | Descriptor.WRITEABLE,
            CharacteristicValue(read=self._read_cccd, write=self._write_cccd))
        self._data = Characteristic(
            gatt.DATA_UUID, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b"",
            descriptors=[cccd])
        control: Characteristic[bytes] = Characteristic(
            gatt.CONTROL_UUID, Characteristic.Properties.WRITE, Characteristic.WRITEABLE,
            CharacteristicValue(write=self._write_control))  # type: ignore[arg-type]
        self._status = Characteristic(
            gatt.STATUS_UUID, Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READABLE, CharacteristicValue(read=self._read_status))
        return Service(gatt.SERVICE_UUID, [self._data, control, self._status])

    def _authorized(self, connection: Connection) -> bool:
        return bool(connection.is_encrypted) and str(connection.peer_address) in self._bonded

    def _require_bond(self, connection: Connection) -> None:
        if not self._authorized(connection):
            self.stats.extra["auth_rejects"] += 1
            log.warning("refused %s: not an encrypted, bonded link", connection.peer_address)
            raise att.ATT_Error(att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR)

    def _read_cccd(self, connection: Connection) -> bytes:
        return b"\x01\x00" if (connection is self._conn and self._subscribed) else b"\x00\x00"

    def _write_cccd(self, connection: Connection, value: bytes) -> None:
        enable = len(value) == 2 and bool(value[0] & 0x01)
        if enable:
            self._require_bond(connection)
            if int(connection.att_mtu) - 3 < self.config.payload_size:
                log.error("central %s negotiated ATT MTU %d: %d-byte notifications need %d "
                          "(run the hub with a smaller --payload-size for such centrals)",
                          connection.peer_address, connection.att_mtu,
                          self.config.payload_size, self.config.payload_size + 3)
                raise att.ATT_Error(att.ATT_INSUFFICIENT_RESOURCES_ERROR)
        if connection is self._conn:
            self._subscribed = enable
            log.info("DATA %s by %s", "subscribed" if enable else "unsubscribed",
                     connection.peer_address)
            self._connected_evt.set()
            self._status_changed()

    def _status_changed(self) -> None:
        """STATUS subscribers hear about subscription, pairing and link-parameter changes."""
        if self.device is not None and self._status is not None and self._conn is not None:
            asyncio.get_running_loop().create_task(self._notify_status())

    async def _notify_status(self) -> None:
        try:
            if self.device is not None and self._status is not None:
                await self.device.notify_subscribers(self._status)
        except Exception as e:  # the link may be gone meanwhile: status is best effort
            log.debug("STATUS notification: %s", e)

    def _write_control(self, connection: Connection, value: bytes) -> None:
        self._require_bond(connection)
        if self._on_command is not None:
            self._on_command(bytes(value))

    def _read_status(self, connection: Connection) -> bytes:
        status = {
            "name": self.config.name, "pairing_open": self.pairing_open,
            "bonded": str(connection.peer_address) in self._bonded,
            "encrypted": bool(connection.is_encrypted), "mtu": self._mtu, "phy": self._phy,
            "data_length": self._data_length, "subscribed": self._subscribed,
        }
        return json.dumps(status, separators=(",", ":")).encode()

    # ------------------------------------------------------------------ connection
    async def _advertise(self) -> None:
        assert self.device is not None
        from bumble.core import UUID, AdvertisingData

        name = self.config.name.encode()
        uuid_ad = (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                   bytes(UUID(gatt.SERVICE_UUID)))
        flags = (AdvertisingData.FLAGS, bytes([0x06]))  # LE general discoverable, no BR/EDR
        room = 31 - 3 - 18 - 2
        name_ad = ((AdvertisingData.COMPLETE_LOCAL_NAME, name) if len(name) <= room
                   else (AdvertisingData.SHORTENED_LOCAL_NAME, name[:room]))
        data = bytes(AdvertisingData([flags, uuid_ad, name_ad]))
        await self.device.start_advertising(
            auto_restart=True, advertising_data=data,
            advertising_interval_min=self.config.advertising_interval_ms,
            advertising_interval_max=self.config.advertising_interval_ms)

    def _on_connection(self, connection: Connection) -> None:
        if self._conn is not None:
            log.warning("second central %s refused", connection.peer_address)
            asyncio.get_running_loop().create_task(connection.disconnect())
            return
        self._conn = connection
        self._completions.clear()          # a new connection has its own event phase
        self._subscribed = False
        self._mtu = att.ATT_DEFAULT_MTU
        self.stats.connects += 1
        log.info("central %s connected", connection.peer_address)
        assert self.device is not None
        queue = self.device.host.get_data_packet_queue(connection.handle)
        if queue is not None:
            if queue is not self._flow_queue:     # the host's LE queue: listen once
                queue.on("flow", self._on_flow)
                self._flow_queue = queue
            self._acked = queue.completed
        connection.on("disconnection", lambda reason: self._on_disconnection(connection, reason))
        connection.on("connection_att_mtu_update", lambda: self._on_mtu(connection))
        connection.on("connection_phy_update", lambda phy: self._on_phy(phy))
        connection.on("connection_data_length_change", lambda: self._on_dle(connection))
        connection.on("pairing", lambda keys: self._on_pairing(connection, keys))
        connection.on("pairing_failure", lambda reason: log.warning(
            "pairing with %s failed: %s", connection.peer_address, reason))
        asyncio.get_running_loop().create_task(self._tune_link(connection))

    async def _tune_link(self, connection: Connection) -> None:
        """The peripheral asks for long PDUs and 2M PHY itself (the central may not)."""
        try:
            await connection.set_data_length(gatt.DATA_LENGTH, gatt.DATA_LENGTH_TIME_US)
        except Exception as e:  # a controller without DLE: 27-byte PDUs
            log.info("data length not set: %r", e)
        if self.config.prefer_2m_phy:
            try:
                await connection.set_phy(tx_phys=[hci.Phy.LE_2M], rx_phys=[hci.Phy.LE_2M])
            except Exception as e:  # a controller without 2M: stay on 1M
                log.info("2M PHY not set: %r", e)

    def _on_mtu(self, connection: Connection) -> None:
        self._mtu = int(connection.att_mtu)
        log.info("ATT MTU %d", self._mtu)

    def _on_phy(self, phy: Any) -> None:
        tx = getattr(phy, "tx_phy", None)
        self._phy = "2M" if tx == hci.HCI_LE_2M_PHY else "1M"
        log.info("PHY %s", self._phy)
        self._status_changed()

    def _on_dle(self, connection: Connection) -> None:
        params = connection.data_length
        self._data_length = int(params.max_tx_octets)
        log.info("data length %d octets", self._data_length)

    def _on_pairing(self, connection: Connection, keys: Any) -> None:
        if not connection.sc or keys.ltk is None:
            log.warning("refusing a legacy (non-SC) pairing from %s", connection.peer_address)
            asyncio.get_running_loop().create_task(self._drop_legacy(connection))
            return
        self._bonded.add(str(connection.peer_address))
        self.stats.extra["pairings"] += 1
        self._status_changed()
        log.info("bonded with %s (LE Secure Connections)", connection.peer_address)

    async def _drop_legacy(self, connection: Connection) -> None:
        assert self.device is not None and self.device.keystore is not None
        await self.device.keystore.delete(str(connection.peer_address))
        await connection.disconnect()

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        if connection is not self._conn:
            return
        log.info("central %s disconnected (reason 0x%02X)", connection.peer_address, reason)
        self._conn = None
        self._subscribed = False
        self.stats.disconnects += 1
        lost = [c for i, c in self._unacked if i > self._acked]
        self._unacked.clear()
        if lost:
            log.info("%d notification(s) not confirmed by the controller: sent again later",
                     len(lost))
            self._replay.extend(lost)
        if not self._stopping:
            self.stats.extra["last_disconnect_reason"] = float(reason)
            self.disconnect_reasons.append(int(reason))
        self._flow.set()


def uplink_from_args(transport: str, args: argparse.Namespace) -> BleUplink:
    """A BleUplink from ``hub run`` options (hub.uplink.gatt.add_ble_arguments)."""
    if not transport:
        raise ValueError("--uplink ble:TRANSPORT needs an HCI transport, e.g. "
                         "ble:serial:/dev/ttyS1,3000000,rtscts")
    keystore = args.ble_keystore or Path(args.state_dir) / "ble_bonds.json"
    return BleUplink(BleConfig(transport=transport, name=args.ble_name,
                               payload_size=args.payload_size,
                               address=args.ble_address, keystore=keystore,
                               pairing_window_s=args.ble_pairing_window,
                               pairing_file=args.ble_pairing_file))
