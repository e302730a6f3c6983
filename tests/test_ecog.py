"""ECoG mode: the hub's high-gamma power per bin (LFP path → band-pass → mean square) against a
scipy reference, on the wire, and decoded: the same decoders on high-gamma features of the
ECoG-like generative implant."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from hil.implant_ctl import encode_velocity
from hil.implant_tuned import tuned_recording
from host_tools.decoding import make_decoder, r2_score
from host_tools.decoding.features import BinAssembler
from host_tools.decoding.synth import reaches
from hub.daemon.packets import Packer
from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.wire import pb

FS = 2000.0
CFG = PipelineConfig(lfp=True, lfp_rate_hz=1000.0, lfp_cutoff_hz=250.0, bin_ms=20.0,
                     block_ms=10.0)


def _run(rec: object, n_blocks: int, velocity: np.ndarray | None = None) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """(bin indices, hg mean x², raw int16) over n_blocks of 10 ms; velocity per 20 ms bin."""
    pipe = Pipeline(CFG, rec.num_channels, FS)  # type: ignore[attr-defined]
    ctl = rec.info["control"]  # type: ignore[attr-defined]
    idx, hg, raw = [], [], []
    for k in range(n_blocks):
        if velocity is not None and k % 2 == 0:
            v = velocity[k // 2]
            ctl.feed(encode_velocity(round(v[0] * 1000), round(v[1] * 1000), k))
        x = rec.read(k * 20, (k + 1) * 20)  # type: ignore[attr-defined]
        raw.append(x)
        res = pipe.process(x)
        if res.hg_power is not None:
            idx.append(res.bins.index)
            hg.append(res.hg_power)
    return np.concatenate(idx), np.concatenate(hg), np.concatenate(raw)


def test_high_gamma_power_matches_scipy_reference() -> None:
    rec = tuned_recording("ecog:4:2000:5", None, 5.0)
    idx, hg, raw = _run(rec, 200)
    assert np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx)))   # every bin, in order
    # reference: the same filters in float64 (scipy), decimated on the absolute index
    lp = signal.sosfilt(signal.butter(4, 250, "lowpass", fs=FS, output="sos"),
                        raw.astype(np.float64), axis=0)[::2]
    bp = signal.sosfilt(signal.butter(2, (70, 150), "bandpass", fs=1000, output="sos"), lp,
                        axis=0)
    ref = (bp ** 2).reshape(-1, 20, 4).mean(1)
    ok = ~np.isnan(hg).any(1)
    np.testing.assert_allclose(hg[ok], ref[idx[ok]], rtol=2e-3, atol=1e-3)


def test_high_gamma_rides_in_feature_packets() -> None:
    rec = tuned_recording("ecog:3:2000:6", None, 2.0)
    pipe = Pipeline(CFG, 3, FS)
    pk, asm = Packer(1), BinAssembler("hg")
    asm.fs = FS
    got = []
    for k in range(60):
        res = pipe.process(rec.read(k * 20, (k + 1) * 20))
        p = pk.features(res.bins, 0, pipe.bin_samples, 1, (k + 1) * 20, res.hg_power)
        if p is not None:
            env = pb.Envelope.FromString(p.body)
            assert len(env.features.hg_rms_q4) == env.features.n_bins * 3
            got += asm.feed(env)
    assert len(got) >= 25 and all(b.x.shape == (3,) for b in got)
    assert np.median([b.x.mean() for b in got]) > 1.0          # counts of high-gamma RMS


@pytest.mark.slow
def test_decoders_on_high_gamma_of_the_ecog_implant() -> None:
    v = reaches(1500, 0.02, 8)                                  # 30 s of reaches, 20 ms bins
    rec = tuned_recording("ecog:32:2000:7", None, 40.0)
    idx, hg, _ = _run(rec, 3000, v)
    X = np.sqrt(np.nan_to_num(hg))
    Y = v[np.clip(idx, 0, len(v) - 1)]
    n = int(0.7 * len(X))
    for kind in ("wiener", "kalman_ss"):
        dec = make_decoder(kind).fit(X[:n], Y[:n])
        r2 = r2_score(Y[n:], dec.decode(X[n:]))
        assert r2 > 0.5, (kind, r2)
