"""ECoG mode: high-gamma band power per channel per bin, from the pipeline's LFP stream.

The decimated LFP (``nk_lfp``: low-pass, every q-th sample of the absolute index) goes through
a 4th-order Butterworth band-pass (``nk_bandpass``, float path) and its mean square is taken
per bin by ``nk_features`` (no events) on the LFP sample index. A spike-band bin b covers
samples [b·B, (b+1)·B); with B a multiple of q its LFP bin covers LFP samples [b·B/q,
(b+1)·B/q) — the same interval — so the rows are matched to the spike-band bins by index.
An LFP bin is complete before its spike-band twin (no detector look-ahead), so ``take`` finds
it when the features leave. High gamma (70–150 Hz) tracks local population firing in ECoG
(Crone et al. 1998; Miller et al. 2007) and is the feature ECoG BCIs decode.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hub.kernels import EVENT_DTYPE, Bandpass, FeatureBinner, butter_sos

HG_BAND_HZ = (70.0, 150.0)
MAX_HELD = 64          # bins kept for their spike-band twin (a few blocks' worth)


class HighGammaBins:
    """``process(lfp, first_lfp_index)`` per block; ``take(bin_indices)`` → (n, C) mean x²."""

    def __init__(self, n_channels: int, lfp_rate_hz: float, bin_lfp_samples: int,
                 max_block: int, band_hz: tuple[float, float] = HG_BAND_HZ) -> None:
        hi = min(band_hz[1], 0.45 * lfp_rate_hz)
        if not 0 < band_hz[0] < hi:
            raise ValueError(f"high-gamma band {band_hz} Hz does not fit an LFP rate of "
                             f"{lfp_rate_hz:g} Hz")
        self.band_hz = (band_hz[0], hi)
        self.filter = Bandpass(n_channels, butter_sos(2, "bandpass", self.band_hz, lfp_rate_hz))
        self.binner = FeatureBinner(n_channels, bin_lfp_samples, 0, max_block)
        self.n_channels = n_channels
        self._no_events = np.zeros(0, dtype=EVENT_DTYPE)
        self.held: dict[int, npt.NDArray[np.float32]] = {}
        self.missing = 0        # spike-band bins that found no high-gamma row

    def process(self, lfp: npt.NDArray[np.float32], first_lfp_index: int) -> None:
        if lfp.shape[0] == 0:
            return
        y = self.filter.process_f32(np.ascontiguousarray(lfp))
        bins = self.binner.process(y, first_lfp_index, self._no_events)
        for i, b in enumerate(bins.index.tolist()):
            self.held[b] = bins.power[i]
        for old in sorted(self.held)[:-MAX_HELD]:
            del self.held[old]

    def take(self, bin_indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Rows for these bins (NaN where none: the stream started inside the bin)."""
        out = np.full((len(bin_indices), self.n_channels), np.nan, np.float32)
        for i, b in enumerate(bin_indices.tolist()):
            row = self.held.pop(b, None)
            if row is None:
                self.missing += 1
            else:
                out[i] = row
        return out
