"""The radio side of the BLE uplink, without state: what the hub advertises, how it tunes a
new connection, and what throughput a connection's parameters allow."""

from __future__ import annotations

import logging

from bumble import hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection

from hub.wire import gatt

log = logging.getLogger(__name__)


def advertising_data(name: str) -> bytes:
    """Flags, the service UUID and the name (shortened to what fits in 31 bytes)."""
    raw = name.encode()
    uuid_ad = (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
               bytes(UUID(gatt.SERVICE_UUID)))
    flags = (AdvertisingData.FLAGS, bytes([0x06]))  # LE general discoverable, no BR/EDR
    room = 31 - 3 - 18 - 2
    name_ad = ((AdvertisingData.COMPLETE_LOCAL_NAME, raw) if len(raw) <= room
               else (AdvertisingData.SHORTENED_LOCAL_NAME, raw[:room]))
    return bytes(AdvertisingData([flags, uuid_ad, name_ad]))


async def tune_link(connection: Connection, prefer_2m_phy: bool) -> None:
    """The peripheral asks for long PDUs and 2M PHY itself (the central may not)."""
    try:
        await connection.set_data_length(gatt.DATA_LENGTH, gatt.DATA_LENGTH_TIME_US)
    except Exception as e:  # a controller without DLE: 27-byte PDUs
        log.info("data length not set: %r", e)
    if prefer_2m_phy:
        try:
            await connection.set_phy(tx_phys=[hci.Phy.LE_2M], rx_phys=[hci.Phy.LE_2M])
        except Exception as e:  # a controller without 2M: stay on 1M
            log.info("2M PHY not set: %r", e)


def per_event(interval_ms: float, phy: str, mtu: int, data_length: int) -> int:
    """Notifications one connection event carries, assuming the controller fills it."""
    interval_us = interval_ms * 1000.0
    rate, preamble = (2.0, 2) if phy == "2M" else (1.0, 1)
    acl = mtu + 4                       # one notification = one L2CAP PDU
    n_pdus = -(-acl // max(27, data_length))
    pdu_us = ((preamble + 4 + 2 + min(acl, data_length) + 4 + 3) * 8 / rate
              + 150 + (preamble + 4 + 2 + 3) * 8 / rate + 150)
    return max(0, int(interval_us // (pdu_us * n_pdus)))


def nominal_bps(interval_ms: float, phy: str, mtu: int, data_length: int,
                payload_size: int) -> float | None:
    """What the connection parameters allow (PHY, data length, interval), assuming the
    controller fills each connection event; None when nothing fits."""
    if interval_ms <= 0:
        return None
    payload = min(payload_size, mtu - 3)
    n = per_event(interval_ms, phy, mtu, data_length)
    return n * payload * 8 / (interval_ms / 1e3) or None
