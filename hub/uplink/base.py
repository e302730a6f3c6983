"""The seam between the hub daemon and its link to the host.

The daemon's scheduler hands the uplink notification-sized chunks (already framed, at most
``payload_size`` bytes each, see hub.wire framing) one at a time; ``send`` returns when the link
has accepted the chunk (its flow control is the throttle: the BLE stack's HCI credits, a TCP
socket's buffer limit). Bytes the host writes to the hub's control endpoint (the BLE CONTROL
characteristic, or the TCP return path) go to the command handler; the result of a command is a
packet like any other and travels back through ``send``.

Implementations: hub.uplink.tcp (bench use, tests) and hub.uplink.ble (Bumble GATT peripheral).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

#: Called with the raw bytes of one command write; must not block (enqueue and return).
CommandHandler = Callable[[bytes], None]


@dataclass
class UplinkStats:
    """Counters every uplink keeps (reported in telemetry)."""

    chunks_sent: int = 0
    bytes_sent: int = 0
    connects: int = 0
    disconnects: int = 0
    send_refused: int = 0          # chunks offered while no peer was connected
    extra: dict[str, float] = field(default_factory=dict)


class Uplink(abc.ABC):
    """One peer at a time; the daemon survives its coming and going."""

    def __init__(self) -> None:
        self.stats = UplinkStats()
        #: called when the link's flow control frees room (the scheduler's wake-up)
        self.on_flow: Callable[[], None] | None = None

    @property
    @abc.abstractmethod
    def payload_size(self) -> int:
        """Largest chunk ``send`` accepts (BLE: ATT MTU − 3, normally 244)."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while a peer is connected and subscribed (chunks can be delivered)."""

    @property
    def nominal_bps(self) -> float | None:
        """The link's expected throughput in bit/s when known (a configured cap, or what the
        connection parameters allow); the scheduler measures the real one. Default: unknown."""
        return None

    @abc.abstractmethod
    async def start(self, on_command: CommandHandler) -> None:
        """Starts listening/advertising; returns once ready to accept a peer."""

    @abc.abstractmethod
    async def send(self, chunk: bytes) -> bool:
        """Delivers one chunk; waits for the link's flow control. False (and nothing sent)
        when no peer is connected or the peer vanished during the call."""

    def send_slots(self) -> int | None:
        """Chunks ``send`` takes now without waiting for flow control; None when the link
        keeps no such count (``send`` waits itself)."""
        return None

    def next_event_s(self) -> float | None:
        """Seconds until the link next takes what is queued (BLE: the next connection event,
        as inferred from the controller's completions); None when unknown or continuous."""
        return None

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Waits until a peer is connected; False on timeout. Default: poll."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.connected:
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnects and releases the transport."""
