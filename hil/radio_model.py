"""The link model of the virtual air: what a BLE connection can carry, and when.

Air time of one link-layer data PDU with payload P bytes (BLE_NOTES.md; Bluetooth SIG,
"Exploring Bluetooth 5 – how fast can it be")::

    bits  = (preamble + 4 access address + 2 header + P + 3 CRC [+ 4 MIC if encrypted]) × 8
    t_pdu = bits / rate          rate = 1 bit/µs on 1M PHY (1-byte preamble),
                                        2 bit/µs on 2M PHY (2-byte preamble)

Each exchange inside a connection event is one PDU from the central, T_IFS (150 µs), the
peripheral's PDU, T_IFS — a data PDU answered by an empty acknowledgement costs
``t_pdu(P) + 150 + t_pdu(0) + 150``: 1392 µs for a full 251-byte PDU on 2M, 2468 µs on 1M.
An HCI ACL packet is sent as ⌈len / max_tx_octets⌉ PDUs and only starts in an event whose
remaining budget holds all of them (the reference figures assume this: 1M without DLE carries
one 244-byte notification per 7.5 ms event → 0.26 Mbit/s).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

T_IFS_US = 150.0
MAX_OCTETS_DLE = 251
MAX_OCTETS_LEGACY = 27


@dataclass
class LinkModel:
    """Radio parameters of every connection in one air process."""

    phy: str = "2M"                      # "1M" or "2M": the PHY a Set PHY request may reach
    interval_ms: float = 7.5             # connection interval
    dle: bool = True                     # data-length extension: 251-byte PDUs, else 27
    max_pdus_per_event: int = 0          # exchanges per event (0: as many as fit)
    event_share: float = 1.0             # share of the interval the controller grants
    per: float = 0.0                     # packet error rate per data PDU (retransmitted)
    supervision_timeout_s: float = 4.0   # nothing through for this long → reason 0x08
    acl_buffers: int = 8                 # controller ACL buffers advertised to each host
    outages: list[tuple[float, float]] = field(default_factory=list)  # (start_s, dur_s)
    #                                    start_s counts from the first connection
    seed: int = 1

    def __post_init__(self) -> None:
        if self.phy not in ("1M", "2M"):
            raise ValueError(f"phy must be '1M' or '2M', not {self.phy!r}")
        if not 0.5 <= self.interval_ms <= 4000:
            raise ValueError(f"interval_ms out of range: {self.interval_ms}")
        if not 0.0 <= self.per < 1.0:
            raise ValueError(f"per must be in [0, 1): {self.per}")
        if not 0.0 < self.event_share <= 1.0:
            raise ValueError(f"event_share must be in (0, 1]: {self.event_share}")
        if self.acl_buffers < 1:
            raise ValueError("acl_buffers must be ≥ 1")
        self.outages = [(float(a), float(b)) for a, b in self.outages]

    @property
    def max_octets(self) -> int:
        return MAX_OCTETS_DLE if self.dle else MAX_OCTETS_LEGACY

    @property
    def budget_us(self) -> float:
        return self.interval_ms * 1000.0 * self.event_share

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkModel:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown link-model keys: {sorted(unknown)}")
        return cls(**known)

    @classmethod
    def load(cls, path: Path) -> LinkModel:
        return cls.from_json(json.loads(path.read_text()))

    def describe(self) -> str:
        text = f"{self.phy} PHY / {self.interval_ms:g} ms"
        if not self.dle:
            text += " / no DLE"
        if self.max_pdus_per_event:
            text += f" / {self.max_pdus_per_event} PDUs per event"
        if self.per:
            text += f" / PER {self.per:g}"
        return text


def pdu_time_us(payload: int, phy: str, encrypted: bool = False) -> float:
    """Air time of one data PDU with ``payload`` bytes (0: an empty PDU, which has no MIC)."""
    preamble, rate = (2, 2.0) if phy == "2M" else (1, 1.0)
    mic = 4 if (encrypted and payload > 0) else 0
    return (preamble + 4 + 2 + payload + mic + 3) * 8 / rate


def exchange_time_us(c_payload: int, p_payload: int, phy: str, encrypted: bool = False) -> float:
    """One central PDU + T_IFS + peripheral PDU + T_IFS."""
    return (pdu_time_us(c_payload, phy, encrypted) + T_IFS_US
            + pdu_time_us(p_payload, phy, encrypted) + T_IFS_US)


def fragments(length: int, max_octets: int) -> list[int]:
    """Payload sizes of the link-layer PDUs that carry an ACL packet of ``length`` bytes."""
    n = max(1, math.ceil(length / max_octets))
    return [min(max_octets, length - i * max_octets) for i in range(n)]


def modelled_throughput_bps(model: LinkModel, notification_payload: int = 244,
                            encrypted: bool = False) -> float:
    """Analytic goodput of a saturated one-way notification stream (no packet errors).

    A notification of ``notification_payload`` ATT bytes is an ACL packet of payload + 3 (ATT
    header) + 4 (L2CAP header) bytes.
    """
    acl_len = notification_payload + 7
    frags = fragments(acl_len, model.max_octets)
    cost = sum(exchange_time_us(0, f, model.phy, encrypted) for f in frags)
    per_event = int(model.budget_us // cost)
    if model.max_pdus_per_event:
        per_event = min(per_event, model.max_pdus_per_event // len(frags))
    return per_event * notification_payload * 8 / (model.interval_ms / 1000.0)
