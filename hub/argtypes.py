"""Argument types for the command lines (``hub``, ``hubctl``, ``hil``): a number out of range
is a usage error with a sentence, never a traceback from deep inside (a port of 99999 raised
OverflowError in connect(), a speed of 0 a ZeroDivisionError).

Each is an ``argparse`` ``type=`` callable: it returns the parsed value or raises
``argparse.ArgumentTypeError`` (argparse prints it with the usage line and exits 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from e
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return x


def bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            integer: bool = False) -> Callable[[str], float]:
    """A finite number within [lo, hi] (``lo_open``: lo excluded); ``integer``: an int."""
    def parse(text: str) -> float:
        x = _number(text)
        if integer and x != int(x):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if lo_open else '≥'} {lo:g}")
        if hi is not None and x > hi:
            raise argparse.ArgumentTypeError(f"{text} must be ≤ {hi:g}")
        return int(x) if integer else x
    parse.__name__ = "number"
    return parse


#: seconds, rates and the like: > 0 and finite
positive = bounded(0.0, lo_open=True)
#: ≥ 0 and finite
non_negative = bounded(0.0)


def port(text: str) -> int:
    """A TCP port, 0 (ephemeral) to 65535."""
    return int(bounded(0, 65535, integer=True)(text))


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (HOST may be empty: 127.0.0.1)."""
    host, sep, p = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: want HOST:PORT")
    return host or "127.0.0.1", port(p)
