"""Hub raw path through the codec: per-channel streams, the fitted level ladder, host decode."""

from __future__ import annotations

import numpy as np

from host_tools.receiver import RawDecoder
from hub.daemon.rawcodec import RawCodec
from hub.wire import pb


def ladder_signal(n: int, seed: int = 0) -> np.ndarray:
    """10-bit codes scaled to 16 bits like the N1: round(64.06·q + 31.03)."""
    rng = np.random.default_rng(seed)
    q = np.round(np.cumsum(rng.standard_normal(n)) * 0.3 + rng.standard_normal(n) * 3)
    q = np.clip(q, -512, 511)
    return np.round(64.06 * q + 31.03).astype(np.int16)


def send(rc: RawCodec, dec: RawDecoder, x: np.ndarray, block: int, skip: set[int]) -> list:
    out = []
    for k, start in enumerate(range(0, x.size, block)):
        if k in skip:  # a block the host never receives (shed / lost)
            continue
        env = pb.Envelope(stream=pb.STREAM_RAW)
        env.raw.first_sample = start
        seg = x[start:start + block]
        env.raw.n_samples = seg.size
        env.raw.channels.append(3)
        got = pb.Envelope.FromString(rc.encode(env, seg, 3))
        y = dec.decode(7, got.raw)
        out.append((start, seg, y))
    return out


def test_bit_exact_with_ladder_switch_and_gaps() -> None:
    fs = 19531.0
    x = ladder_signal(int(3 * fs))
    rc, dec = RawCodec(fs), RawDecoder()
    blocks = send(rc, dec, x, 195, skip={40, 41, 150})
    for start, seg, y in blocks:
        assert y is not None, f"block at {start} not decodable"
        assert np.array_equal(y[:, 0], seg)
    assert dec.undecodable == 0
    assert rc._ladders.get(3) is not None  # fitted after the first second


def test_ladder_doubles_the_ratio() -> None:
    fs = 19531.0
    x = ladder_signal(int(6 * fs), seed=1)
    rc, dec = RawCodec(fs), RawDecoder()
    send(rc, dec, x[: int(fs)], 195, set())            # first second: no ladder yet
    first = rc.ratio
    rc.raw_bytes = rc.coded_bytes = 0
    send(rc, dec, x[int(fs):], 195, set())
    assert rc.ratio > 1.6 * first, (first, rc.ratio)
