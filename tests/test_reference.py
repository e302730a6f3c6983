"""Common median / average reference against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.kernels import Reference


def numpy_reference(x: np.ndarray, groups: np.ndarray, mode: str) -> np.ndarray:
    out = x.copy()
    for g in np.unique(groups[groups >= 0]):
        sel = groups == g
        r = np.median(x[:, sel], axis=1) if mode == "median" else np.mean(x[:, sel], axis=1)
        out[:, sel] = x[:, sel] - r[:, None].astype(np.float32)
    return out


@pytest.mark.parametrize("n_channels", [1, 2, 3, 64, 255, 256, 257, 1024, 1023])
def test_median_exact(n_channels: int) -> None:
    rng = np.random.default_rng(n_channels)
    x = (rng.standard_normal((300, n_channels)) * 20).astype(np.float32)
    x[::5] = np.round(x[::5] / 4)  # many ties
    groups = np.zeros(n_channels, np.int32)
    y = Reference(groups, "median").process(x.copy())
    assert np.array_equal(y, numpy_reference(x, groups, "median"))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_groups_median_and_average(n_channels: int, n_groups: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((20, n_channels)) * 50).astype(np.float32)
    groups = rng.integers(-1, min(n_groups, n_channels), n_channels).astype(np.int32)
    med = Reference(groups, "median").process(x.copy())
    assert np.array_equal(med, numpy_reference(x, groups, "median"))
    avg = Reference(groups, "average").process(x.copy())
    np.testing.assert_allclose(avg, numpy_reference(x, groups, "average"), atol=1e-3)


def test_bad_groups() -> None:
    with pytest.raises(ValueError):
        Reference(np.array([0, 5]), "median")
    with pytest.raises(ValueError):
        Reference(np.array([], np.int32))
    with pytest.raises(ValueError):
        Reference(np.zeros(4), "mode")
