"""Linear decoders: the Wiener filter (features of the current and L−1 previous bins, ridge
regularised) and the instantaneous ridge baseline (L = 1).

The ridge penalty is chosen by contiguous-block validation inside the training data (the Gram
matrix is formed once; each inner fit subtracts its block's share). Weights are stored in raw
feature units (standardisation folded in), so a step is one dot product over the lag window:
L·N·D multiply-accumulates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import F64, Decoder, need

log = logging.getLogger(__name__)

LAMBDAS = (10.0, 100.0, 1e3, 3e3, 1e4, 3e4, 1e5)


def lagged(X: F64, lags: int) -> F64:
    """(T, lags·N): row t is [x_t, x_{t−1}, …, x_{t−lags+1}], zeros before the first bin
    (what a decoder that starts from an empty history sees)."""
    T, N = X.shape
    out = np.zeros((T, lags * N))
    for k in range(lags):
        out[k:, k * N:(k + 1) * N] = X[:T - k]
    return out


class LagWindow:
    """The causal history a lagged decoder steps over: [x_t, x_{t−1}, …] flattened."""

    def __init__(self, lags: int, n: int) -> None:
        self.lags, self.n = lags, n
        self.z = np.zeros(lags * n)

    def push(self, x: F64) -> F64:
        """Adds the newest bin; returns the window (a view, valid until the next push)."""
        n = self.n
        self.z[n:] = self.z[:-n]
        self.z[:n] = x
        return self.z

    def after(self, X: F64) -> LagWindow:
        """The window as it stands after stepping through X from empty."""
        for t in range(max(0, X.shape[0] - self.lags), X.shape[0]):
            self.push(X[t])
        return self


def r2_score(Y: F64, P: F64) -> float:
    """Coefficient of determination averaged over the output columns."""
    ss_res = ((Y - P) ** 2).sum(0)
    ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-300)))


def inner_blocks(T: int, k: int) -> list[npt.NDArray[np.intp]]:
    """``k`` contiguous blocks covering range(T) (inner validation folds)."""
    return [b for b in np.array_split(np.arange(T), k) if b.size]


def choose_ridge(Z: F64, Y: F64, lambdas: tuple[float, ...] = LAMBDAS,
                 k: int = 4) -> tuple[float, dict[float, float]]:
    """The λ with the best mean R² over ``k`` contiguous inner blocks of (Z, Y) (Z standardised,
    Y centred); returns (λ, {λ: R²}). The Gram matrix is formed once; each inner fit subtracts
    its block's share (one linear solve per block and λ)."""
    G, C = Z.T @ Z, Z.T @ Y
    eye = np.eye(G.shape[0])
    scores = {lam: 0.0 for lam in lambdas}
    for blk in inner_blocks(Z.shape[0], k):
        Zb, Yb = Z[blk], Y[blk]
        Gi, Ci = G - Zb.T @ Zb, C - Zb.T @ Yb
        for lam in lambdas:
            scores[lam] += r2_score(Yb, Zb @ np.linalg.solve(Gi + lam * eye, Ci)) / k
    best = max(scores, key=lambda lam: scores[lam])
    return best, scores


def ridge_solve(Z: F64, Y: F64, lam: float) -> F64:
    """argmin ‖ZW − Y‖² + λ‖W‖²."""
    return np.asarray(np.linalg.solve(Z.T @ Z + lam * np.eye(Z.shape[1]), Z.T @ Y), np.float64)


class WienerDecoder(Decoder):
    """y_t = b + Σ_{k<L} W_k x_{t−k}: the Wiener filter with L lags, ridge λ by inner CV."""

    kind = "wiener"

    def __init__(self, lags: int = 10, lambdas: tuple[float, ...] = LAMBDAS,
                 inner_folds: int = 4) -> None:
        super().__init__()
        self.lags, self.lambdas, self.inner_folds = lags, lambdas, inner_folds
        self.W = np.zeros((0, 0))
        self.b = np.zeros(0)
        self._win = LagWindow(lags, 0)

    def fit(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> WienerDecoder:
        x, y = self._check_fit(X, Y)
        L = lagged(x, self.lags)
        mu, sd = L.mean(0), L.std(0)
        sd[sd < 1e-9] = 1.0          # a feature that never varied gets weight 0 anyway
        Z = (L - mu) / sd
        ym = y.mean(0)
        lam, scores = choose_ridge(Z, y - ym, self.lambdas, self.inner_folds)
        Wz = ridge_solve(Z, y - ym, lam)
        self.W = Wz / sd[:, None]
        self.b = ym - mu @ self.W
        self.chosen = {"lambda": lam, "inner_r2": round(scores[lam], 4)}
        log.debug("%s: λ=%g (inner R² %s)", self.kind, lam,
                  {k: round(v, 3) for k, v in scores.items()})
        self.reset()
        return self

    def reset(self) -> None:
        self._win = LagWindow(self.lags, self.n_inputs)

    def step(self, x: npt.ArrayLike) -> F64:
        out: F64 = self._win.push(self._check_bin(x)) @ self.W + self.b
        return out

    def decode(self, X: npt.ArrayLike) -> F64:
        x = self._check_x(X)
        out: F64 = lagged(x, self.lags) @ self.W + self.b
        self._win = LagWindow(self.lags, self.n_inputs).after(x)
        return out

    def macs_per_bin(self) -> int:
        return self.lags * self.n_inputs * self.n_outputs

    def _arrays(self) -> dict[str, F64]:
        return {"W": self.W, "b": self.b}

    def _meta(self) -> dict[str, Any]:
        return {"lags": self.lags}

    def _restore(self, arrays: dict[str, F64], meta: dict[str, Any]) -> None:
        self.lags = int(meta["lags"])
        if self.lags < 1:
            raise ValueError("lags must be ≥ 1")
        self.W = need(arrays, "W", (self.lags * self.n_inputs, self.n_outputs))
        self.b = need(arrays, "b", (self.n_outputs,))


class RidgeDecoder(WienerDecoder):
    """The baseline: the current bin only (one lag), ridge λ by inner CV."""

    kind = "ridge"

    def __init__(self, lambdas: tuple[float, ...] = LAMBDAS, inner_folds: int = 4) -> None:
        super().__init__(lags=1, lambdas=lambdas, inner_folds=inner_folds)
