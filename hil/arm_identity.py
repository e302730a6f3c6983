"""Bit-identity probe: the hub pipeline and codecs over a fixed synthetic recording, hashed.

Run by ``make hil-arm`` twice — with this machine's hub and, inside the Debian arm64 root, with
the installed aarch64 hub (``python3 arm_identity.py`` with the release on PYTHONPATH) — and
the two JSON outputs must be equal. Imports only ``hub`` and numpy (it runs where hil is not
installed). Hashes: every detected event, the snippet events and waveforms, the feature bins,
the raw codec's packets and the event codec's batches, block by block.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from typing import Any

import numpy as np

from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.kernels.codec import Encoder, encode_events


def synth(n_ch: int, fs: int, seconds: float, seed: int) -> np.ndarray[Any, Any]:
    """int16 noise with spikes of three shapes on neighbouring channels (integer math only)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    x = rng.integers(-60, 60, size=(n, n_ch), dtype=np.int16)
    shapes = np.array([[-80, -300, -700, -450, -150, 60, 90, 40],
                       [-50, -200, -400, -600, -300, -50, 80, 60],
                       [60, -150, -900, -200, 100, 120, 40, 10]], dtype=np.int16)
    times = np.sort(rng.choice(np.arange(100, n - 20), size=int(40 * seconds * n_ch // 4),
                               replace=False))
    for t, c, k in zip(times, rng.integers(0, n_ch, times.size),
                       rng.integers(0, 3, times.size), strict=True):
        for dc, scale in ((0, 2), (1, 1)):
            cc = (c + dc) % n_ch
            x[t:t + 8, cc] += shapes[k] // (3 - scale)
    return x


def main() -> int:
    n_ch, fs = 32, 30000
    x = synth(n_ch, fs, 3.0, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 7)
    pos = np.array([[(c % 2) * 20.0, (c // 2) * 20.0] for c in range(n_ch)])
    pipe = Pipeline(PipelineConfig(), n_ch, float(fs), pos)
    enc = Encoder(n_ch, sample_rate=fs)
    h = {k: hashlib.sha256() for k in ("events", "snippets", "feature_bins", "raw_codec",
                                      "event_codec")}
    counts = dict.fromkeys(h, 0)
    h["raw_codec"].update(enc.header)
    for start in range(0, x.shape[0], pipe.block_samples):
        block = np.ascontiguousarray(x[start:start + pipe.block_samples])
        r = pipe.process(block)
        h["events"].update(r.events.tobytes())
        h["snippets"].update(r.snippet_events.tobytes() + r.snippets.tobytes())
        b = r.bins
        h["feature_bins"].update(b.index.tobytes() + b.samples.tobytes() + b.counts.tobytes()
                                 + b.power.tobytes())
        h["raw_codec"].update(enc.encode(block))
        h["event_codec"].update(encode_events(r.snippet_events, r.snippets, step=0.5))
        counts["events"] += int(r.events.size)
        counts["snippets"] += int(r.snippet_events.size)
        counts["feature_bins"] += int(b.index.size)
        counts["raw_codec"] += 1
        counts["event_codec"] += 1
    print(json.dumps({"machine": platform.machine(), "counts": counts,
                      "sha256": {k: v.hexdigest() for k, v in h.items()}}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
