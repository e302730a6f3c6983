"""Channel masks on the wire: bit i (LSB first in byte i // 8) selects channel i
(``Configure.raw_channel_mask``)."""

from __future__ import annotations

import numpy as np


class MaskError(ValueError):
    """A channel mask that does not fit the implant's channel count."""


def mask_to_channels(mask: bytes, n_channels: int | None) -> tuple[int, ...]:
    """Bit i (LSB first in byte i // 8) selects channel i; the mask must match the channel
    count exactly (ceil(C/8) bytes, no bits past the last channel)."""
    if n_channels is None:
        raise MaskError("raw_channel_mask: the channel count is not known yet (no implant)")
    need = (n_channels + 7) // 8
    if len(mask) != need:
        raise MaskError(f"raw_channel_mask: {len(mask)} bytes for {n_channels} channels "
                        f"(want {need})")
    bits = np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="little")
    if bits[n_channels:].any():
        raise MaskError(f"raw_channel_mask: bits set past channel {n_channels - 1}")
    return tuple(int(i) for i in np.flatnonzero(bits[:n_channels]))


def channels_to_mask(channels: list[int] | tuple[int, ...], n_channels: int) -> bytes:
    bits = np.zeros(((n_channels + 7) // 8) * 8, np.uint8)
    bits[list(channels)] = 1
    return np.packbits(bits, bitorder="little").tobytes()
