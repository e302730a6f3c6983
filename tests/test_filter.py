"""Band-pass and LFP kernels against scipy (design and filtering)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from hub.kernels import Bandpass, KernelError, LfpFilter, butter_sos


@pytest.mark.parametrize("order,btype,freqs,fs", [
    (1, "bandpass", (300.0, 6000.0), 30000.0),
    (2, "bandpass", (300.0, 6000.0), 30000.0),
    (3, "bandpass", (300.0, 5000.0), 19531.0),
    (4, "lowpass", (250.0,), 30000.0),
    (3, "highpass", (300.0,), 15000.0),
])
def test_design_matches_scipy(order: int, btype: str, freqs: tuple[float, ...],
                              fs: float) -> None:
    ours = butter_sos(order, btype, freqs, fs)
    ref = signal.butter(order, list(freqs) if len(freqs) > 1 else freqs[0], btype=btype,
                        fs=fs, output="sos")
    w = np.linspace(1, fs / 2 - 1, 400)
    _, h_ours = signal.sosfreqz(ours, worN=w, fs=fs)
    _, h_ref = signal.sosfreqz(ref, worN=w, fs=fs)
    np.testing.assert_allclose(np.abs(h_ours), np.abs(h_ref), atol=1e-9)


def test_bandpass_matches_sosfilt() -> None:
    """float32 state vs scipy's float64: error below 1e-4 of the signal's RMS."""
    fs = 30000.0
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((30000, 8)) * 300).astype(np.int16)
    sos = butter_sos(2, "bandpass", (300.0, 6000.0), fs)
    y = Bandpass(8, sos).process(x)
    ref = signal.sosfilt(sos, x.astype(np.float64), axis=0)
    rms = np.sqrt(np.mean(ref**2))
    assert np.max(np.abs(y - ref)) < 1e-4 * rms


def test_bandpass_block_size_invariant() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3000, 5)) * 100).astype(np.int16)
    sos = butter_sos(1, "bandpass", (300.0, 6000.0), 30000.0)
    whole = Bandpass(5, sos).process(x)
    f = Bandpass(5, sos)
    parts = np.concatenate([f.process(np.ascontiguousarray(x[i:i + 37]))
                            for i in range(0, 3000, 37)])
    assert np.array_equal(whole, parts)


def test_lfp_decimates_on_absolute_index() -> None:
    fs = 30000.0
    t = np.arange(6000) / fs
    x = (1000 * np.sin(2 * np.pi * 20 * t))[:, None].astype(np.int16)
    sos = butter_sos(4, "lowpass", (250.0,), fs)
    whole = LfpFilter(1, sos, 30).process(x, 0)
    f = LfpFilter(1, sos, 30)
    parts = np.concatenate([f.process(np.ascontiguousarray(x[i:i + 77]), i)
                            for i in range(0, 6000, 77)])
    assert whole.shape == (200, 1)
    assert np.array_equal(whole, parts)
    ref = signal.sosfilt(sos, x[:, 0].astype(float))[::30]
    assert np.max(np.abs(whole[:, 0] - ref)) < 1e-3 * np.max(np.abs(ref))


@pytest.mark.parametrize("bad", [
    lambda: Bandpass(4, np.zeros((1, 5))),
    lambda: Bandpass(0, butter_sos(1, "bandpass", (300.0, 6000.0), 30000.0)),
    lambda: butter_sos(2, "bandpass", (6000.0, 300.0), 30000.0),
    lambda: butter_sos(2, "bandpass", (300.0, 20000.0), 30000.0),
    lambda: butter_sos(2, "notch", (300.0,), 30000.0),
])
def test_bad_design_is_an_error(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


def test_wrong_dtype_or_shape_is_an_error() -> None:
    f = Bandpass(4, butter_sos(1, "bandpass", (300.0, 6000.0), 30000.0))
    with pytest.raises(TypeError, match="int16"):
        f.process(np.zeros((10, 4), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        f.process(np.zeros((10, 3), np.int16))
    with pytest.raises(ValueError, match="contiguous"):
        f.process(np.zeros((4, 10), np.int16).T)
    assert issubclass(KernelError, RuntimeError)
