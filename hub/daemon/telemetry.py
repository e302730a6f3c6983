"""Process and board readings for telemetry, and systemd's notify protocol.

CPU load is process CPU time over wall time (all threads: the kernels run in a worker), as a
fraction of one core. Temperature and battery come from sysfs when the board has them (NaN
otherwise). ``sd_notify`` speaks the NOTIFY_SOCKET datagram protocol without a dependency.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)


class CpuMeter:
    """CPU seconds per wall second since the previous reading."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()
        self.total_cpu = 0.0

    def read(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        d_cpu, d_wall = cpu - self._cpu, wall - self._wall
        self.total_cpu += d_cpu
        self._cpu, self._wall = cpu, wall
        return d_cpu / d_wall if d_wall > 0 else 0.0


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


def temperature_c(sysfs: Path = Path("/sys/class/thermal")) -> float:
    """The first thermal zone's temperature in °C, NaN when there is none."""
    for zone in sorted(sysfs.glob("thermal_zone*")):
        v = _read_number(zone / "temp")
        if v is not None:
            return v / 1000.0
    return math.nan


def battery_pct(sysfs: Path = Path("/sys/class/power_supply")) -> float:
    """The first battery's charge in %, NaN when there is none."""
    for supply in sorted(sysfs.glob("*")):
        try:
            kind = (supply / "type").read_text().strip()
        except OSError:
            continue
        if kind == "Battery":
            v = _read_number(supply / "capacity")
            if v is not None:
                return v
    return math.nan


def sd_notify(state: str) -> bool:
    """Sends ``state`` (e.g. "READY=1", "WATCHDOG=1") to systemd; False when not under it."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", state, e)
        return False


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec when the watchdog is on for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
