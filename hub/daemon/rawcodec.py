"""Raw broadband through the lossless codec (hub/kernels/codec.py), one stream per channel.

Raw packets are encoded when the scheduler sends them, not when they are made: a packet that
is shed is never encoded, and a channel whose previous block was not sent (shed, not selected,
link down) simply starts again with a resync point, which carries the codec's stream header.
So the host can decode every raw packet it receives, and shedding costs no more than the
samples it reports. Runs on the event loop (the sender); the worker never touches it.

Low-resolution ADCs scaled to 16 bits (the N1's 10-bit codes × 64) compress twice as well once
the codec knows the level ladder. A channel's first second is coded without one while its
samples are kept; then the ladder is fitted on them and the channel's stream restarts with a
resync point whose header carries the ladder (the host re-creates its decoder on a new header).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from hub.kernels import codec
from hub.wire import SCHEMA_VERSION, pb

log = logging.getLogger(__name__)


def extend_ladder(levels: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The ladder fitted on one second, continued over the whole int16 range: beyond the
    observed levels, round(a·q + b) from a least-squares fit of level against code index q.
    Inside the observed range the levels stay exactly as fitted (a rounded copy would add
    near-duplicates); outside it, later excursions (drift, large spikes) stay on the ladder
    instead of being escaped."""
    lv = levels.astype(np.float64)
    if lv.size < 2:
        return levels
    step = float(np.median(np.diff(lv)))
    q = np.round((lv - lv[0]) / step)
    a, b = np.polyfit(q, lv, 1)
    if not (np.isfinite(a) and np.isfinite(b) and a > 0):
        return levels
    qs = np.arange(int(np.ceil((-32768 - b) / a)), int(np.floor((32767 - b) / a)) + 1)
    full = np.round(a * qs + b)
    outside = full[((full < lv[0] - step / 2) | (full > lv[-1] + step / 2))
                   & (full >= -32768) & (full <= 32767)]
    out: npt.NDArray[np.int16] = np.union1d(outside.astype(np.int16), levels).astype(np.int16)
    return out


class RawCodec:
    """Per-channel encoders and their sample continuity."""

    def __init__(self, sampling_rate: float) -> None:
        self.fs = sampling_rate
        self._enc: dict[int, codec.Encoder] = {}
        self._next: dict[int, int] = {}
        self._history: dict[int, list[npt.NDArray[np.int16]]] = {}  # until the ladder is fitted
        self._ladder_done: set[int] = set()
        self._ladders: dict[int, npt.NDArray[np.int16]] = {}
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
        if channel not in self._ladder_done and self._learn_ladder(channel, samples):
            enc = None                         # restart the stream with the fitted ladder
        if enc is None:
            enc = self._enc[channel] = codec.Encoder(
                1, sample_rate=round(self.fs), resync_interval=max(1, round(self.fs)),
                levels=self._ladders.get(channel))
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

    def _learn_ladder(self, channel: int, samples: npt.NDArray[np.int16]) -> bool:
        """Keeps the channel's samples until a second has been seen, then fits its ladder.
        True when the ladder was just fitted (the stream must restart to carry it)."""
        hist = self._history.setdefault(channel, [])
        hist.append(np.array(samples, dtype=np.int16).ravel())
        if sum(h.size for h in hist) < self.fs:
            return False
        ladder = codec.fit_ladder(np.concatenate(hist))
        del self._history[channel]
        self._ladder_done.add(channel)
        if ladder is None:
            return False                       # not a scaled low-resolution ADC: keep going
        self._ladders[channel] = extend_ladder(ladder)
        log.debug("channel %d: level ladder of %d levels", channel, ladder.size)
        return True

