"""Raw broadband through the lossless codec (hub/kernels/codec.py), one stream per channel.

Raw packets are encoded when the scheduler sends them, not when they are made: a packet that
is shed is never encoded, and a channel whose previous block was not sent (shed, not selected,
link down) simply starts again with a resync point, which carries the codec's stream header.
So the host can decode every raw packet it receives, and shedding costs no more than the
samples it reports. Runs on the event loop (the sender); the worker never touches it.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from hub.kernels import codec
from hub.wire import SCHEMA_VERSION, pb

log = logging.getLogger(__name__)


class RawCodec:
    """Per-channel encoders and their sample continuity."""

    def __init__(self, sampling_rate: float) -> None:
        self.fs = sampling_rate
        self._enc: dict[int, codec.Encoder] = {}
        self._next: dict[int, int] = {}
        self.raw_bytes = 0
        self.coded_bytes = 0

    @property
    def ratio(self) -> float:
        """Compression ratio so far (int16 bytes / coded bytes); 1 before any data."""
        return self.raw_bytes / self.coded_bytes if self.coded_bytes else 1.0

    def encode(self, env: pb.Envelope, samples: npt.NDArray[np.int16], channel: int) -> bytes:
        """Fills ``env.raw`` (first_sample, n_samples set) for one channel; returns the
        serialized envelope."""
        enc = self._enc.get(channel)
        first = env.raw.first_sample
        if enc is None:
            enc = self._enc[channel] = codec.Encoder(
                1, sample_rate=round(self.fs), resync_interval=max(1, round(self.fs)))
        elif self._next.get(channel) != first:
            enc.force_resync()                 # the host missed the previous block
        data = enc.encode(np.ascontiguousarray(samples.reshape(-1, 1)))
        self._next[channel] = first + samples.shape[0]
        rb = env.raw
        rb.encoding = pb.RAW_NK_CODEC
        rb.data = data
        if codec.peek_packet(data).resync:
            rb.codec_header = enc.header
        self.raw_bytes += 2 * samples.size
        self.coded_bytes += len(data)
        env.schema_version = SCHEMA_VERSION
        return env.SerializeToString()

