"""A bleak backend over Bumble: host code written against bleak runs on the virtual radio.

bleak 3.1 has no Bumble backend; its documented seam is ``backend=`` on ``BleakScanner`` and
``BleakClient``. ``BumbleBackend(transport=...)`` makes a scanner and a client class bound to
one Bumble HCI transport (``tcp-client:127.0.0.1:PORT`` for the air process)::

    be = BumbleBackend("tcp-client:127.0.0.1:9001", keystore=Path("host_bonds.json"))
    dev = await BleakScanner.find_device_by_name("ihub-01", backend=be.scanner)
    async with BleakClient(dev, backend=be.client) as client: ...

What an OS stack would do on its own, the client does in ``connect``: ATT MTU exchange (247),
LE data length (251 octets), 2M PHY, and security — encryption with the stored bond, or
pairing (LE Secure Connections, bonding) when asked to with ``pair=True`` / ``pair()``.
One Bumble device (one HCI transport) serves every scanner and client of a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, hci
from bumble.core import AdvertisingData, BaseBumbleError
from bumble.device import Advertisement, Connection, Device, DeviceConfiguration, Peer
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport

from hub.wire import gatt
from hub.wire.bonds import SecretKeyStore, device_address, random_static_address

log = logging.getLogger(__name__)

@contextlib.contextmanager
def _as_bleak(what: str) -> Iterator[None]:
    """Bumble errors as bleak's: ATT errors keep their code, the rest become BleakError."""
    try:
        yield
    except att.ATT_Error as e:
        raise BleakGATTProtocolError(int(e.error_code)) from e
    except (BaseBumbleError, TimeoutError) as e:
        raise BleakError(f"{what}: {e!r}") from e


_PROPS = {0x02: "read", 0x04: "write-without-response", 0x08: "write", 0x10: "notify",
          0x20: "indicate"}


@dataclass
class BumbleBackend:
    """One Bumble HCI transport, and the bleak backend classes bound to it."""

    transport: str
    keystore: Path | None = None
    #: the host's random static address (keeps bonds); "": this install's own, made once and
    #: kept beside the keystore (KEYSTORE.address), or a fresh one without a keystore
    address: str = ""
    mtu: int = gatt.ATT_MTU
    data_length: int = gatt.DATA_LENGTH
    disconnect_reasons: list[int] = field(default_factory=list, init=False)
    _device: Device | None = field(default=None, init=False, repr=False)
    _hci: Any = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    @property
    def scanner(self) -> type[BaseBleakScanner]:
        return type("BumbleScanner", (BumbleScanner,), {"bumble": self})

    @property
    def client(self) -> type[BaseBleakClient]:
        return type("BumbleClient", (BumbleClient,), {"bumble": self})

    async def device(self) -> Device:
        """The powered-on Bumble device (opened on first use)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._device is None:
                if not self.address:
                    self.address = (device_address(self.keystore.with_suffix(".address"))
                                    if self.keystore is not None else random_static_address())
                self._hci = await open_transport(self.transport)
                cfg = DeviceConfiguration(name="hubctl", address=hci.Address(self.address))
                dev = Device.from_config_with_hci(cfg, self._hci.source, self._hci.sink)
                if self.keystore is not None:
                    self.keystore.parent.mkdir(parents=True, exist_ok=True)
                    dev.keystore = SecretKeyStore(namespace=self.address,
                                                  filename=str(self.keystore))
                dev.pairing_config_factory = lambda _c: PairingConfig(
                    sc=True, mitm=False, bonding=True,
                    delegate=PairingDelegate(PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT))
                await dev.power_on()
                self._device = dev
            return self._device

    async def close(self) -> None:
        """Releases the HCI transport."""
        if self._hci is not None:
            await self._hci.close()
        self._hci = None
        self._device = None

    async def has_bond(self, address: str) -> bool:
        dev = await self.device()
        return dev.keystore is not None and await dev.keystore.get(address) is not None


class BumbleScanner(BaseBleakScanner):
    """BaseBleakScanner over Bumble's scanning."""

    bumble: ClassVar[BumbleBackend]

    def __init__(self, detection_callback: AdvertisementDataCallback | None,
                 service_uuids: list[str] | None, scanning_mode: str = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._device: Device | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = await self.bumble.device()
        self._device.on("advertisement", self._on_advertisement)
        await self._device.start_scanning(filter_duplicates=False)

    async def stop(self) -> None:
        if self._device is not None:
            self._device.remove_listener("advertisement", self._on_advertisement)
            try:
                await self._device.stop_scanning()
            except Exception as e:  # the transport may be gone already
                log.debug("stop scanning: %s", e)

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = adv.data
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.SHORTENED_LOCAL_NAME)
        uuids: list[str] = []
        for t in (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                  AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS):
            for u in data.get(t) or []:
                uuids.append(str(u).lower())
        if not self.is_allowed_uuid(uuids):
            return
        ad = AdvertisementData(local_name=name if isinstance(name, str) else None,
                               manufacturer_data={}, service_data={}, service_uuids=uuids,
                               tx_power=None, rssi=int(adv.rssi), platform_data=(adv,))
        addr = str(adv.address)
        device = self.create_or_update_device(addr, addr, ad.local_name, adv.address, ad)
        self.call_detection_callbacks(device, ad)


class BumbleClient(BaseBleakClient):
    """BaseBleakClient over a Bumble central: GATT client, MTU/DLE/PHY, SMP."""

    bumble: ClassVar[BumbleBackend]

    def __init__(self, address_or_ble_device: BLEDevice | str, *,
                 disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        self._conn: Connection | None = None
        self._peer: Peer | None = None
        self._closing = False

    @property
    def name(self) -> str:
        return str(self.address)

    @property
    def mtu_size(self) -> int:
        return int(self._conn.att_mtu) if self._conn is not None else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._conn is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        dev = await self.bumble.device()
        self._closing = False
        try:
            conn = await dev.connect(hci.Address(self.address), timeout=self._timeout)
        except Exception as e:
            raise BleakError(f"connect to {self.address} failed: {e}") from e
        self._conn = conn
        conn.on("disconnection", self._on_disconnection)
        peer = Peer(conn)
        self._peer = peer
        try:
            with _as_bleak("connection setup"):
                await self._setup(conn, peer, pair)
        except BaseException:
            await self.disconnect()
            raise

    async def _setup(self, conn: Connection, peer: Peer, pair: bool) -> None:
        """What an OS stack does after connecting: MTU, DLE, PHY, security, discovery."""
        await peer.request_mtu(self.bumble.mtu)
        await conn.set_data_length(self.bumble.data_length, gatt.DATA_LENGTH_TIME_US)
        try:
            await conn.set_phy(tx_phys=[hci.Phy.LE_2M], rx_phys=[hci.Phy.LE_2M])
        except Exception as e:  # a 1M-only radio
            log.info("2M PHY not set: %s", e)
        if await self.bumble.has_bond(str(conn.peer_address)):
            try:
                await conn.encrypt()
            except BaseBumbleError as e:
                if not pair:
                    raise
                # the peer forgot us (its bonds were wiped): bond again if allowed to
                log.warning("stored bond refused by %s (%r): pairing again",
                            conn.peer_address, e)
                await self.unpair()
                await conn.pair()
        elif pair:
            await conn.pair()
        await self._discover(peer)

    async def _discover(self, peer: Peer) -> None:
        coll = BleakGATTServiceCollection()
        for s in await peer.discover_services():
            svc = BleakGATTService(s, s.handle, str(s.uuid).lower())
            coll.add_service(svc)
            for c in await s.discover_characteristics():
                props = [n for bit, n in _PROPS.items() if int(c.properties) & bit]
                ch = BleakGATTCharacteristic(c, c.handle, str(c.uuid).lower(), props,  # type: ignore[arg-type]
                                             lambda: self.mtu_size - 3, svc)
                coll.add_characteristic(ch)
                for d in await c.discover_descriptors():
                    coll.add_descriptor(BleakGATTDescriptor(d, d.handle, str(d.type).lower(), ch))
        self.services = coll

    def _on_disconnection(self, reason: int) -> None:
        log.info("disconnected from %s (reason 0x%02X)", self.address, reason)
        self.bumble.disconnect_reasons.append(int(reason))
        self._conn = None
        self._peer = None
        if not self._closing and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None:
            try:
                await asyncio.wait_for(conn.disconnect(), 3.0)
            except Exception as e:
                log.debug("disconnect: %s", e)
        self._conn = None
        self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        if self._conn is None:
            raise BleakError("not connected")
        with _as_bleak("pairing failed"):
            await self._conn.pair()

    async def unpair(self) -> None:
        dev = await self.bumble.device()
        if dev.keystore is not None:
            with contextlib.suppress(KeyError):
                await dev.keystore.delete(str(self.address))

    # -- GATT I/O: Bumble ATT errors become bleak's protocol errors
    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        with _as_bleak("read"):
            return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        with _as_bleak("read descriptor"):
            return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        with _as_bleak("write"):
            await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        with _as_bleak("write descriptor"):
            await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        def on_value(value: bytes) -> None:
            callback(bytearray(value))
        with _as_bleak("subscribe"):
            await characteristic.obj.subscribe(on_value, prefer_notify=True)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        with _as_bleak("unsubscribe"):
            await characteristic.obj.unsubscribe()
