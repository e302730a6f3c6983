"""Decoder kinds by name (the ``__kind__`` of a decoder file, the names decode-eval reports)."""

from __future__ import annotations

from host_tools.decoding.base import Decoder
from host_tools.decoding.kalman import KalmanDecoder, SteadyStateKalman
from host_tools.decoding.linear import RidgeDecoder, WienerDecoder
from host_tools.decoding.mlp import LagMLPDecoder

DECODERS: dict[str, type[Decoder]] = {
    cls.kind: cls
    for cls in (RidgeDecoder, WienerDecoder, KalmanDecoder, SteadyStateKalman, LagMLPDecoder)
}


def make_decoder(kind: str) -> Decoder:
    """A fresh decoder of ``kind`` with its default hyper-parameter search."""
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r} (known: {', '.join(DECODERS)})")
    return DECODERS[kind]()
