"""The robust common reference (nk_reference.h, NK_REF_ROBUST): a float32 oracle of the whole
algorithm, block-size invariance, and the two behaviours it exists for — no inverted spike
copies on a dense probe, common-mode noise still removed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from hub.dsp.pipeline import reference_halves
from hub.errors import InvalidInput
from hub.kernels import Reference

F = np.float32
QUIET, STRIDE, WARMUP = F(4.4478), 32, 64


def _quiet_median(v: npt.NDArray[np.float32], lim: np.float32) -> np.float32:
    q = v[(v > -lim) & (v < lim)]
    return F(np.median(v if 4 * q.size < v.size or q.size == 0 else q))


def _rm_step(t: int, slow: np.float32) -> np.float32:
    eta = F(0.1) / (F(1.0) + F(t) * F(0.1) * F(0.5))
    return slow if eta < slow else eta


def oracle(x: npt.NDArray[np.float32], halves: npt.NDArray[np.int32],
           tau: float) -> tuple[npt.NDArray[np.float32], list[float]]:
    """One group of every channel, row by row, in binary32 as the C code evaluates it."""
    n = x.shape[1]
    h0, h1 = np.flatnonzero(halves == 0), np.flatnonzero(halves == 1)
    mad, sr, sd, share = F(1), F(1), F(1), F(0)
    slow = F(1) / F(tau)
    updates = 0
    out = x.copy()
    shares = []
    for t in range(x.shape[0]):
        v = x[t]
        if t % STRIDE == 0:
            e = _rm_step(updates, slow * F(STRIDE))
            over = int((np.abs(v) > mad).sum())
            lim = QUIET * mad
            mad = mad * (F(1) + e * (F(2 * over - n) / F(n)))
            if h0.size and h1.size:
                m0, m1 = _quiet_median(v[h0], lim), _quiet_median(v[h1], lim)
                mean, diff = F(0.5) * (m0 + m1), m0 - m1
                sr = sr * (F(1) + e if abs(mean) > sr else F(1) - e)
                sd = sd * (F(1) + e if abs(diff) > sd else F(1) - e)
                b = F(0)
                if sr > 0 and updates >= WARMUP:
                    b = F(1) - (sd * sd) / (F(4) * sr * sr)
                share = F(min(max(b, F(0)), F(1)))
            updates += 1
            shares.append(float(share))
        if share == 0:
            continue
        ref = share * _quiet_median(v, QUIET * mad)
        out[t] = v - ref
    return out, shares


def test_robust_matches_the_float32_oracle() -> None:
    rng = np.random.default_rng(7)
    n_t, n_ch = 12000, 12
    cm = np.convolve(rng.standard_normal(n_t), np.ones(5) / 5, "same") * 15
    x = (rng.standard_normal((n_t, n_ch)) * 10 + cm[:, None]).astype(np.float32)
    x[3000:3010, :9] -= 200.0          # a spike on most channels
    x[::7, 2] = np.round(x[::7, 2])     # ties
    halves = (np.arange(n_ch) % 3 == 0).astype(np.int32)
    want, shares = oracle(x, halves, 3000.0)
    ref = Reference(np.zeros(n_ch, np.int32), "robust", halves, tau_samples=3000.0)
    got = ref.process(x.copy())
    assert np.array_equal(got, want)
    assert ref.share()[0] == np.float32(shares[-1]) and shares[-1] > 0.5


def test_block_size_does_not_change_the_result() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((9000, 40)) * 10
         + rng.standard_normal((9000, 1)) * 8).astype(np.float32)
    whole = Reference(np.arange(40) // 20, "robust").process(x.copy())
    ref = Reference(np.arange(40) // 20, "robust")
    parts = [ref.process(x[a:a + b].copy()) for a, b in
             ((0, 1), (1, 299), (300, 4000), (4300, 4700))]
    assert np.array_equal(np.concatenate(parts), whole)


def _dense_probe(common: float, seed: int = 0) -> tuple[npt.NDArray[np.float32],
                                                        npt.NDArray[np.float64],
                                                        npt.NDArray[np.int64]]:
    """32 contacts, two columns 20 µm apart; every 5 ms a unit 300 counts large whose spike
    reaches most of the probe (power-law decay); noise σ = 10 counts, independent, plus a
    common-mode signal of `common` σ."""
    rng = np.random.default_rng(seed)
    pos = np.c_[np.tile([0.0, 20.0], 16), np.repeat(np.arange(16) * 20.0, 2)]
    n_t = 60000
    x = rng.standard_normal((n_t, 32)) * 10 + rng.standard_normal((n_t, 1)) * 10 * common
    wave = np.array([-0.2, -0.7, -1.0, -0.6, -0.1, 0.25, 0.3, 0.2, 0.1, 0.05])
    times = np.arange(1000, n_t - 20, 150)
    for k, t in enumerate(times):
        src = np.array([10.0, 20.0 * (k % 16)])
        amp = 300.0 / (1.0 + (np.linalg.norm(pos - src, axis=1) / 40.0) ** 1.5)
        x[t:t + wave.size] += wave[:, None] * amp[None, :]
    return x.astype(np.float32), pos, times


def _copy(y: npt.NDArray[np.float32], times: npt.NDArray[np.int64]) -> float:
    """The inverted copy a reference leaves: the mean, over the second half's spikes, of the
    channels ≥ 150 µm from the spike at its peak (≈ 0 without a reference), in counts."""
    vals = []
    for k, t in enumerate(times[len(times) // 2:], start=len(times) // 2):
        far = np.abs(np.repeat(np.arange(16) * 20.0, 2) - 20.0 * (k % 16)) >= 150
        vals.append(y[t + 2, far].mean() - x_far_mean(k, far))
    return float(np.mean(vals))


def x_far_mean(k: int, far: npt.NDArray[np.bool_]) -> float:
    """What the spike itself puts on those channels at its peak (power law, as generated)."""
    pos = np.c_[np.tile([0.0, 20.0], 16), np.repeat(np.arange(16) * 20.0, 2)]
    src = np.array([10.0, 20.0 * (k % 16)])
    amp = 300.0 / (1.0 + (np.linalg.norm(pos - src, axis=1) / 40.0) ** 1.5)
    return float(-amp[far].mean())


def test_a_dense_probe_gets_no_inverted_spike_copies() -> None:
    x, pos, times = _dense_probe(common=0.0)
    groups = np.zeros(32, np.int32)
    med = Reference(groups, "median").process(x.copy())
    rob = Reference(groups, "robust", reference_halves(groups, pos))
    y = rob.process(x.copy())
    # the median subtracts a large share of every spike from every channel; the robust one
    # sees no common mode (β ≈ 0) and leaves the far channels as they were
    assert rob.share()[0] < 0.3
    assert _copy(med, times) > 40.0
    assert abs(_copy(y, times)) < 10.0


def test_common_mode_is_still_removed() -> None:
    x, pos, times = _dense_probe(common=3.0)
    groups = np.zeros(32, np.int32)
    rob = Reference(groups, "robust", reference_halves(groups, pos))
    y = rob.process(x.copy())
    assert rob.share()[0] > 0.9
    quiet = np.ones(x.shape[0], bool)
    for t in times:
        quiet[t - 5:t + 20] = False
    resid = y[30000:][quiet[30000:]]
    # σ of the common-mode-free noise is 10 counts; with 30 counts of common mode left in,
    # it would be ≈ 32
    assert 9.0 < float(resid.std()) < 12.0


def test_robust_arguments() -> None:
    with pytest.raises(InvalidInput, match="halves"):
        Reference(np.zeros(4, np.int32), "robust", np.array([0, 1, 2, 0]))
    with pytest.raises(InvalidInput, match="halves"):
        Reference(np.zeros(4, np.int32), "robust", np.array([0, 1]))
    with pytest.raises(InvalidInput, match="robust mode only"):
        Reference(np.zeros(4, np.int32), "median", np.array([0, 1, 0, 1]))
    with pytest.raises(InvalidInput, match="tau"):
        Reference(np.zeros(4, np.int32), "robust", tau_samples=0.5)
    assert Reference(np.zeros(4, np.int32), "median").share().tolist() == [1.0]


def test_halves_split_each_group_along_its_long_side() -> None:
    pos = np.c_[np.tile([0.0, 20.0], 8), np.repeat(np.arange(8) * 25.0, 2)]
    groups = np.arange(16) // 8
    h = reference_halves(groups, pos)
    assert h is not None
    assert h.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] * 2
    assert reference_halves(groups, None) is None
