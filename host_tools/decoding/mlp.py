"""A Wiener filter with a hidden layer: a small feed-forward network over the same causal lag
window (the current bin and L−1 before it).

    h = relu(W1ᵀ z + b1),  y = W2ᵀ h + b2,   z = standardised [x_t, …, x_{t−L+1}]

Trained in numpy (Adam, mini-batches, dropout on the inputs, weight decay); the number of
epochs is chosen by early stopping on the last contiguous stretch of the training data (never
on the data the decoder is judged on). Linear decoders miss that motor cortex encodes speed and
direction with rectified, heterogeneous tuning; one hidden layer of 64 units catches most of it
(Glaser et al. 2020 report the same ranking on similar M1 data). A step costs L·N·H + H·D
multiply-accumulates: 110 k for 171 units × 10 lags × 64 — microseconds on the hub's core.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import F64, Decoder, need
from host_tools.decoding.linear import LagWindow, lagged, r2_score

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]


class LagMLPDecoder(Decoder):
    """Causal lagged MLP (one hidden ReLU layer); see the module docstring."""

    kind = "mlp"

    def __init__(self, lags: int = 10, hidden: int = 64, epochs: int = 40, batch: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-3, input_dropout: float = 0.2,
                 valid_fraction: float = 0.15, seed: int = 0) -> None:
        super().__init__()
        self.lags, self.hidden, self.epochs, self.batch = lags, hidden, epochs, batch
        self.lr, self.weight_decay, self.input_dropout = lr, weight_decay, input_dropout
        self.valid_fraction, self.seed = valid_fraction, seed
        self.w: dict[str, F64] = {}
        self._win = LagWindow(lags, 0)
        #: called after each epoch with (epoch, validation R²): progress for long fits
        self.progress: Any = None

    def fit(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> LagMLPDecoder:
        x, y = self._check_fit(X, Y, min_bins=50)
        L = lagged(x, self.lags)
        n_fit = round(len(L) * (1.0 - self.valid_fraction))
        mu, sd = L[:n_fit].mean(0), L[:n_fit].std(0)
        sd[sd < 1e-3] = 1.0
        ym, ys = y[:n_fit].mean(0), y[:n_fit].std(0)
        ys[ys < 1e-12] = 1.0
        Z = ((L - mu) / sd).astype(np.float32)
        T = ((y - ym) / ys).astype(np.float32)
        params, best_epoch, best_r2 = self._train(Z[:n_fit], T[:n_fit], Z[n_fit:], y[n_fit:],
                                                  ym, ys)
        # fold the standardisation into the first and last layers: raw features in, velocity out
        W1 = params["W1"].astype(np.float64) / sd[:, None]
        self.w = {"W1": W1, "b1": params["b1"].astype(np.float64) - mu @ W1,
                  "W2": params["W2"].astype(np.float64) * ys[None, :],
                  "b2": params["b2"].astype(np.float64) * ys + ym}
        self.chosen = {"epochs": float(best_epoch + 1), "valid_r2": round(best_r2, 4)}
        self.reset()
        return self

    def _train(self, Z: F32, T: F32, Zv: F32, Yv: F64, ym: F64,
               ys: F64) -> tuple[dict[str, F32], int, float]:
        rng = np.random.default_rng(self.seed)
        D, H, n_out = Z.shape[1], self.hidden, T.shape[1]
        P: dict[str, F32] = {
            "W1": rng.normal(0, 1 / np.sqrt(D), (D, H)).astype(np.float32),
            "b1": np.zeros(H, np.float32),
            "W2": rng.normal(0, 1 / np.sqrt(H), (H, n_out)).astype(np.float32),
            "b2": np.zeros(n_out, np.float32)}
        m1 = {k: np.zeros_like(v) for k, v in P.items()}
        m2 = {k: np.zeros_like(v) for k, v in P.items()}
        keep = 1.0 - self.input_dropout
        best: tuple[float, dict[str, F32], int] = (-np.inf, {k: v.copy() for k, v in P.items()}, 0)
        step = 0
        for epoch in range(self.epochs):
            order = rng.permutation(len(Z))
            for s in range(0, len(Z), self.batch):
                b = order[s:s + self.batch]
                z = Z[b] * ((rng.random((len(b), D)) < keep).astype(np.float32) / keep)
                a = z @ P["W1"] + P["b1"]
                h = np.maximum(a, 0.0)
                g = (h @ P["W2"] + P["b2"] - T[b]) * (2.0 / len(b))
                gh = (g @ P["W2"].T) * (a > 0)
                grads = {"W2": h.T @ g, "b2": g.sum(0), "W1": z.T @ gh, "b1": gh.sum(0)}
                step += 1
                c1, c2 = 1 - 0.9 ** step, 1 - 0.999 ** step
                for k, p in P.items():
                    gk = grads[k] + self.weight_decay * p
                    m1[k] = 0.9 * m1[k] + 0.1 * gk
                    m2[k] = 0.999 * m2[k] + 0.001 * gk * gk
                    p -= self.lr * (m1[k] / c1) / (np.sqrt(m2[k] / c2) + 1e-8)
            if len(Zv):
                pred = (np.maximum(Zv @ P["W1"] + P["b1"], 0) @ P["W2"] + P["b2"]) * ys + ym
                score = r2_score(Yv, pred.astype(np.float64))
            else:
                score = float(epoch)      # no validation data: keep the last epoch
            if score > best[0]:
                best = (score, {k: v.copy() for k, v in P.items()}, epoch)
            if self.progress is not None:
                self.progress(epoch, score)
        return best[1], best[2], float(best[0])

    def reset(self) -> None:
        self._win = LagWindow(self.lags, self.n_inputs)

    def _forward(self, z: F64) -> F64:
        w = self.w
        out: F64 = np.maximum(z @ w["W1"] + w["b1"], 0.0) @ w["W2"] + w["b2"]
        return out

    def step(self, x: npt.ArrayLike) -> F64:
        return self._forward(self._win.push(self._check_bin(x)))

    def decode(self, X: npt.ArrayLike) -> F64:
        x = self._check_x(X)
        out = self._forward(lagged(x, self.lags))
        self._win = LagWindow(self.lags, self.n_inputs).after(x)
        return out

    def macs_per_bin(self) -> int:
        return self.lags * self.n_inputs * self.hidden + self.hidden * self.n_outputs

    def _arrays(self) -> dict[str, F64]:
        return dict(self.w)

    def _meta(self) -> dict[str, Any]:
        return {"lags": self.lags, "hidden": self.hidden}

    def _restore(self, arrays: dict[str, F64], meta: dict[str, Any]) -> None:
        self.lags, self.hidden = int(meta["lags"]), int(meta["hidden"])
        if self.lags < 1 or self.hidden < 1:
            raise ValueError("lags and hidden must be ≥ 1")
        n, h, d = self.lags * self.n_inputs, self.hidden, self.n_outputs
        self.w = {"W1": need(arrays, "W1", (n, h)), "b1": need(arrays, "b1", (h,)),
                  "W2": need(arrays, "W2", (h, d)), "b2": need(arrays, "b2", (d,))}
