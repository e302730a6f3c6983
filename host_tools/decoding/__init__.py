"""Motor decoding: binned neural features → 2-D velocity, causal and bin by bin.

Decoders (``fit`` / ``step`` / ``decode`` / ``save``; :func:`load_decoder`): ``ridge`` (current
bin), ``wiener`` (10 lags), ``kalman`` and ``kalman_ss`` (velocity Kalman filter, full and
steady state), ``mlp`` (the Wiener window with a hidden layer). ``hubctl decode-eval`` scores
them offline; the closed loop (``hil/closed_loop*``, ``hubctl cursor``) runs them live.
"""

from host_tools.decoding.base import Decoder, DecoderError, load_decoder
from host_tools.decoding.kalman import KalmanDecoder, SteadyStateKalman
from host_tools.decoding.linear import RidgeDecoder, WienerDecoder, r2_score
from host_tools.decoding.mlp import LagMLPDecoder
from host_tools.decoding.registry import DECODERS, make_decoder

__all__ = [
    "DECODERS",
    "Decoder",
    "DecoderError",
    "KalmanDecoder",
    "LagMLPDecoder",
    "RidgeDecoder",
    "SteadyStateKalman",
    "WienerDecoder",
    "load_decoder",
    "make_decoder",
    "r2_score",
]
