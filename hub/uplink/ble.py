"""The BLE uplink: a GATT peripheral on Bumble (DESIGN §5).

One central carries the data at a time: the *owner*, a bonded central on an encrypted link
that subscribed to DATA. The HCI transport is a Bumble transport string: ``serial:/dev/ttyS1,
3000000,rtscts`` (a controller chip on a UART), ``hci-socket:0`` (a kernel adapter) or
``tcp-client:127.0.0.1:PORT`` (the virtual air, hil/air.py). The hub advertises its name and
service UUID while it has room for another connection (``max_connections``), also while it is
connected: a stranger in radio range that connects and idles must not hide the hub from its
bonded host. Every connection that has not become the owner within ``auth_s`` (pairing,
encryption and subscription included) is disconnected, so strangers hold a slot for seconds
at most, and a stranger never displaces the owner. A bonded central that subscribes from a new
connection takes over the data (the same host, reconnected while its old link times out).

Flow control: ``send`` keeps at most ``max_in_flight`` ACL packets of the connection queued or
in the controller, waiting on the controller's Number-Of-Completed-Packets (Bumble's
DataPacketQueue 'flow' event). The scheduler above therefore sees the link's real throughput;
nothing piles up inside the stack.

Security: CONTROL writes and DATA subscriptions (CCCD writes) need an encrypted link whose peer
holds an LE Secure Connections bond with this hub; otherwise the ATT request fails with
Insufficient Authentication (0x05). Pairing is accepted only while the pairing window is open:
``open_pairing_window(seconds)``, or while the provisioning file ``pairing_file`` exists. Bonds
are kept in a JSON keystore on the hub, mode 0600 (hub.wire.bonds). STATUS reports a central
as bonded only on its encrypted link: an unencrypted central cannot learn whether the address
it shows is one the hub trusts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bumble import att, hci
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.gatt import Characteristic, CharacteristicValue, Descriptor, Service
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport

from hub.uplink import ble_link
from hub.uplink.base import CommandHandler, Uplink
from hub.wire import gatt
from hub.wire.bonds import SecretKeyStore, device_address, secure_dir

log = logging.getLogger(__name__)


@dataclass
class BleConfig:
    """How the hub's BLE side is set up (part of the hub configuration)."""

    transport: str = "tcp-client:127.0.0.1:9000"
    name: str = gatt.DEFAULT_HUB_NAME
    address: str = ""                      # "": this install's own (beside the keystore)
    keystore: Path = Path("ble_bonds.json")
    pairing_file: Path | None = None       # pairing allowed while this file exists
    pairing_window_s: float = 0.0          # pairing allowed this long after start
    payload_size: int = gatt.ATT_MTU - 3   # bytes per notification (the daemon's chunks)
    max_in_flight: int = 0                 # ACL packets queued + in flight (0: the
                                           # controller's LE ACL buffer count)
    advertising_interval_ms: float = 50.0
    prefer_2m_phy: bool = True
    auth_s: float = 10.0                   # a connection not the owner by then is dropped
    max_connections: int = 3               # the owner and strangers waiting for their deadline


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
        self._conn: Connection | None = None       # the owner (carries DATA), or None
        self._subscribed = False
        self._conns: set[Connection] = set()       # every connected central
        self._link: dict[Connection, dict[str, Any]] = {}   # MTU, PHY, data length of each
        self._advertising = False
        self._bg: set[asyncio.Task[None]] = set()
        self._dropping: set[Connection] = set()      # connections we are disconnecting
        self._bonded: set[str] = set()
        self._window_until = 0.0
        self._flow = asyncio.Event()
        self._connected_evt = asyncio.Event()
        self._data: Characteristic[bytes] | None = None
        self._status: Characteristic[bytes] | None = None
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
                                 "replayed": 0.0, "auth_timeouts": 0.0, "takeovers": 0.0,
                                 "strangers": 0.0})

    # link parameters of the owner's connection (defaults until one is known)
    @property
    def _mtu(self) -> int:
        return int(self._link.get(self._conn, {}).get("mtu", att.ATT_DEFAULT_MTU))  # type: ignore[arg-type]

    @property
    def _phy(self) -> str:
        return str(self._link.get(self._conn, {}).get("phy", "1M"))  # type: ignore[arg-type]

    @property
    def _data_length(self) -> int:
        return int(self._link.get(self._conn, {}).get("dl", 27))  # type: ignore[arg-type]

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
        return ble_link.nominal_bps(float(conn.parameters.connection_interval), self._phy,
                                    self._mtu, self._data_length, self.config.payload_size)

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
        if not cfg.address:       # never a shared default: every hub its own, kept
            cfg.address = device_address(cfg.keystore.parent / "ble_address")
        self._transport = await open_transport(cfg.transport)
        dev_cfg = DeviceConfiguration(name=cfg.name, address=hci.Address(cfg.address))
        device = Device.from_config_with_hci(dev_cfg, self._transport.source,
                                             self._transport.sink)
        cfg.keystore.parent.mkdir(parents=True, exist_ok=True)
        device.keystore = SecretKeyStore(namespace=cfg.address, filename=str(cfg.keystore))
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
        return ble_link.per_event(float(conn.parameters.connection_interval), self._phy,
                                  self._mtu, self._data_length)

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
        # a re-advertise or disconnect still in flight would wait out the controller's command
        # timeout (10 s) once the transport is closed: this stop does their work itself
        bg = list(self._bg)
        for task in bg:
            task.cancel()
        if bg:
            await asyncio.gather(*bg, return_exceptions=True)
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
            others = [c for c in self._conns if c is not conn]
            if others:
                await asyncio.gather(*(self._disconnect(
                    c, hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR) for c in others))
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
        if enable and connection is not self._conn:
            old = self._conn
            if old is not None:      # the same host from a new link, its old one timing out
                self.stats.extra["takeovers"] += 1
                log.warning("bonded central %s subscribed from a new connection: it takes the "
                            "data over from %s", connection.peer_address, old.peer_address)
                self._lose_owner()
                self._spawn(self._disconnect(
                    old, hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))
            self._conn = connection
            self._completions.clear()      # a new connection has its own event phase
            self.stats.connects += 1
            self.stats.extra["strangers"] -= 1
        if connection is self._conn:
            self._subscribed = enable
            log.info("DATA %s by %s", "subscribed" if enable else "unsubscribed",
                     connection.peer_address)
            self._connected_evt.set()
            self._status_changed()

    def _status_changed(self) -> None:
        """STATUS subscribers hear about subscription, pairing and link-parameter changes."""
        if self.device is not None and self._status is not None and self._conns:
            self._spawn(self._notify_status())

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
        link = self._link.get(connection, {})
        status = {
            "name": self.config.name, "pairing_open": self.pairing_open,
            # only on the central's own encrypted link: no one learns which addresses are
            # trusted by showing them
            "bonded": self._authorized(connection),
            "encrypted": bool(connection.is_encrypted),
            "mtu": int(link.get("mtu", att.ATT_DEFAULT_MTU)), "phy": link.get("phy", "1M"),
            "data_length": int(link.get("dl", 27)),
            "subscribed": connection is self._conn and self._subscribed,
        }
        return json.dumps(status, separators=(",", ":")).encode()

    # ------------------------------------------------------------------ connection
    async def _advertise(self) -> None:
        assert self.device is not None
        data = ble_link.advertising_data(self.config.name)
        # restarted by hand (_readvertise), also while connected: auto_restart would only
        # restart after a disconnection, and a stranger's idle connection would hide the hub
        await self.device.start_advertising(
            auto_restart=False, advertising_data=data,
            advertising_interval_min=self.config.advertising_interval_ms,
            advertising_interval_max=self.config.advertising_interval_ms)
        self._advertising = True

    async def _readvertise(self) -> None:
        """Advertises again while there is room for another connection (a connection stops
        legacy advertising in the controller)."""
        if self.device is None or self._stopping:
            return
        if len(self._conns) >= self.config.max_connections:
            self._advertising = False
            return
        try:
            if self.device.legacy_advertiser is not None:
                await self.device.stop_advertising()
            await self._advertise()
        except Exception as e:  # a controller that refuses: retried at the next (dis)connection
            self._advertising = False
            log.warning("advertising not restarted: %r", e)

    def _on_connection(self, connection: Connection) -> None:
        self._conns.add(connection)
        self._link[connection] = {"mtu": att.ATT_DEFAULT_MTU, "phy": "1M", "dl": 27}
        self.stats.extra["strangers"] += 1
        log.info("central %s connected (%d connection(s)); it has %.0f s to become the owner",
                 connection.peer_address, len(self._conns), self.config.auth_s)
        self._spawn(self._readvertise())
        asyncio.get_running_loop().call_later(self.config.auth_s, self._deadline, connection)
        assert self.device is not None
        queue = self.device.host.get_data_packet_queue(connection.handle)
        if queue is not None:
            if queue is not self._flow_queue:     # the host's LE queue: listen once
                queue.on("flow", self._on_flow)
                self._flow_queue = queue
            self._acked = queue.completed
        connection.on("disconnection", lambda reason: self._on_disconnection(connection, reason))
        connection.on("connection_att_mtu_update", lambda: self._on_mtu(connection))
        connection.on("connection_phy_update", lambda phy: self._on_phy(connection, phy))
        connection.on("connection_data_length_change", lambda: self._on_dle(connection))
        connection.on("pairing", lambda keys: self._on_pairing(connection, keys))
        connection.on("pairing_failure", lambda reason: log.warning(
            "pairing with %s failed: %s", connection.peer_address, reason))
        self._spawn(ble_link.tune_link(connection, self.config.prefer_2m_phy))

    def _deadline(self, connection: Connection) -> None:
        """A connection that is not the owner by now (no bond, no encryption, no subscription:
        a stranger, or a central that idles) is dropped: it must not hold a slot."""
        if connection not in self._conns or connection is self._conn:
            return
        self.stats.extra["auth_timeouts"] += 1
        log.warning("central %s did not authenticate and subscribe within %.0f s: "
                    "disconnected", connection.peer_address, self.config.auth_s)
        self._spawn(self._disconnect(
            connection, hci.HCI_AUTHENTICATION_FAILURE_ERROR))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs ``coro`` as a task this uplink keeps a reference to until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _disconnect(self, connection: Connection, reason: int) -> None:
        self._dropping.add(connection)
        try:
            await asyncio.wait_for(connection.disconnect(reason), 5.0)
        except Exception as e:  # already gone
            log.debug("disconnect %s: %r", connection.peer_address, e)

    def _on_mtu(self, connection: Connection) -> None:
        self._link.setdefault(connection, {})["mtu"] = int(connection.att_mtu)
        log.info("ATT MTU %d (%s)", int(connection.att_mtu), connection.peer_address)

    def _on_phy(self, connection: Connection, phy: Any) -> None:
        tx = getattr(phy, "tx_phy", None)
        self._link.setdefault(connection, {})["phy"] = "2M" if tx == hci.HCI_LE_2M_PHY else "1M"
        log.info("PHY %s (%s)", self._link[connection]["phy"], connection.peer_address)
        self._status_changed()

    def _on_dle(self, connection: Connection) -> None:
        params = connection.data_length
        self._link.setdefault(connection, {})["dl"] = int(params.max_tx_octets)
        log.info("data length %d octets (%s)", int(params.max_tx_octets),
                 connection.peer_address)

    def _on_pairing(self, connection: Connection, keys: Any) -> None:
        if not connection.sc or keys.ltk is None:
            log.warning("refusing a legacy (non-SC) pairing from %s", connection.peer_address)
            self._spawn(self._drop_legacy(connection))
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
        self._conns.discard(connection)
        self._link.pop(connection, None)
        if not self._stopping:
            self._spawn(self._readvertise())
        ours = connection in self._dropping
        self._dropping.discard(connection)
        if not self._stopping and not ours:     # a link loss, not our own disconnect
            self.stats.extra["last_disconnect_reason"] = float(reason)
            self.disconnect_reasons.append(int(reason))
        if connection is not self._conn:
            log.info("central %s disconnected (reason 0x%02X), not the owner",
                     connection.peer_address, reason)
            return
        log.info("central %s disconnected (reason 0x%02X)", connection.peer_address, reason)
        self._lose_owner()
        self._flow.set()

    def _lose_owner(self) -> None:
        """The owner's data path is gone: what the controller never confirmed goes out again
        on the next owner's connection."""
        connection = self._conn
        self._conn = None
        self._subscribed = False
        self.stats.disconnects += 1
        lost = [c for i, c in self._unacked if i > self._acked]
        self._unacked.clear()
        if lost:
            log.info("%d notification(s) to %s not confirmed by the controller: sent again "
                     "later", len(lost), connection.peer_address if connection else "?")
            self._replay.extend(lost)


def uplink_from_args(transport: str, args: argparse.Namespace) -> BleUplink:
    """A BleUplink from ``hub run`` options (hub.uplink.gatt.add_ble_arguments)."""
    if not transport:
        raise ValueError("--uplink ble:TRANSPORT needs an HCI transport, e.g. "
                         "ble:serial:/dev/ttyS1,3000000,rtscts")
    state = Path(args.state_dir)
    secure_dir(state)                       # bond keys and the address live here
    keystore = args.ble_keystore or state / "ble_bonds.json"
    address = args.ble_address or device_address(state / "ble_address")
    return BleUplink(BleConfig(transport=transport, name=args.ble_name,
                               payload_size=args.payload_size,
                               address=address, keystore=keystore,
                               pairing_window_s=args.ble_pairing_window,
                               pairing_file=args.ble_pairing_file))
