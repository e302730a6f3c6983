"""The velocity Kalman filter (Wu et al. 2006; the BCI form of Gilja et al. 2012) and its
steady-state form.

State v_t (D velocities), observations z_t (N features per bin):

    v_t = A v_{t−1} + w,  w ~ N(0, W)          (fitted on the training kinematics)
    z_{t−ℓ} = H v_t + d + q,  q ~ N(0, Q)      (fitted by least squares; ℓ bins of neural lead)

The update uses the information form, so a step never inverts an N×N matrix:
P⁺ = (P⁻¹ + HᵀQ⁻¹H)⁻¹, v⁺ = v + P⁺HᵀQ⁻¹(z − d − Hv). The lead ℓ ∈ {0, 1, 2} is chosen by
contiguous-block validation inside the training data. The steady-state filter iterates the
Riccati recursion to its fixed point once: a step is then v ← M v + K (z − d), D·(N + D)
multiply-accumulates — what a hub or an implant can afford at any bin rate.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import F64, Decoder, DecoderError, need
from host_tools.decoding.linear import inner_blocks, r2_score

log = logging.getLogger(__name__)

LEADS = (0, 1, 2)
Q_SHRINK = 1e-2   # Q ← Q + ε·mean(diag Q)·I: units silent in training stay harmless


def _inv(a: F64) -> F64:
    return np.asarray(np.linalg.inv(a), np.float64)


def _fit_params(x: F64, y: F64, lead: int) -> dict[str, F64]:
    """A, W, H, d, Q and the initial state for observation lead ``lead`` (bins)."""
    D = y.shape[1]
    z, v = (x[:-lead], y[lead:]) if lead else (x, y)
    A = np.linalg.lstsq(y[:-1], y[1:], rcond=None)[0].T
    res = y[1:] - y[:-1] @ A.T
    W = np.cov(res.T).reshape(D, D) + 1e-12 * np.eye(D)
    S = np.c_[v, np.ones(len(v))]
    Hd = np.linalg.lstsq(S, z, rcond=None)[0].T          # (N, D+1)
    H, d = Hd[:, :D], Hd[:, D]
    rz = z - S @ Hd.T
    Q = np.cov(rz.T).reshape(z.shape[1], z.shape[1])
    diag = np.diag(Q)
    floor = max(float(diag.mean()), 1e-6)
    Q = Q + Q_SHRINK * floor * np.eye(len(Q)) + np.diag((diag < 1e-9) * floor)
    return {"A": A, "W": W, "H": H, "d": d, "Q": Q, "v0": y.mean(0),
            "P0": np.cov(y.T).reshape(D, D)}


class KalmanDecoder(Decoder):
    """The full (time-varying gain) velocity Kalman filter."""

    kind = "kalman"

    def __init__(self, leads: tuple[int, ...] = LEADS, inner_folds: int = 4) -> None:
        super().__init__()
        self.leads, self.inner_folds = leads, inner_folds
        self.lead = 0
        self.p: dict[str, F64] = {}
        self._v = np.zeros(0)
        self._P = np.zeros((0, 0))
        self._buf: deque[F64] = deque()

    # ------------------------------------------------------------------ fitting
    def fit(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> KalmanDecoder:
        x, y = self._check_fit(X, Y, min_bins=4 * (max(self.leads) + 3) * self.inner_folds)
        scores: dict[int, float] = {}
        for lead in self.leads:
            s = 0.0
            for blk in inner_blocks(len(x), self.inner_folds):
                rest = np.ones(len(x), bool)
                rest[blk] = False
                # the rest is two pieces around the block: fit on their concatenation (one
                # spurious transition at the seam among thousands)
                self._set(_fit_params(x[rest], y[rest], lead), lead)
                s += r2_score(y[blk], self.decode(x[blk])) / self.inner_folds
            scores[lead] = s
        best = max(scores, key=lambda k: scores[k])
        self._set(_fit_params(x, y, best), best)
        self.chosen = {"lead_bins": float(best), "inner_r2": round(scores[best], 4)}
        log.debug("%s: lead %d (inner R² %s)", self.kind, best, scores)
        return self

    def _set(self, p: dict[str, F64], lead: int) -> None:
        self.p, self.lead = dict(p), lead
        Qi = np.linalg.inv(p["Q"])
        self.p["HtQi"] = p["H"].T @ Qi
        self.p["HtQiH"] = self.p["HtQi"] @ p["H"]
        self._derived()
        self.reset()

    def _derived(self) -> None:
        """Anything computed once from the fitted parameters (the steady state adds its gain)."""

    # ------------------------------------------------------------------ running
    def reset(self) -> None:
        if not self.p:
            return
        self._v = self.p["v0"].copy()
        self._P = self.p["P0"].copy()
        self._buf = deque(maxlen=self.lead + 1)

    def _observe(self, x: npt.ArrayLike) -> F64 | None:
        """The observation paired with the current state (ℓ bins old), None while filling."""
        v = self._check_bin(x)
        self._buf.append(v)
        if len(self._buf) <= self.lead:
            return None
        return self._buf[0] - self.p["d"]

    def step(self, x: npt.ArrayLike) -> F64:
        z = self._observe(x)
        A = self.p["A"]
        v = A @ self._v
        P = A @ self._P @ A.T + self.p["W"]
        if z is not None:
            Pp = _inv(_inv(P) + self.p["HtQiH"])
            v = v + Pp @ (self.p["HtQi"] @ z - self.p["HtQiH"] @ v)
            P = Pp
        self._v, self._P = v, P
        return v.copy()

    def macs_per_bin(self) -> int:
        D, N = self.n_outputs, self.n_inputs
        return D * N + 6 * D ** 3 + 4 * D * D

    # ------------------------------------------------------------------ files
    _SAVED = ("A", "W", "H", "d", "Q", "v0", "P0")

    def _arrays(self) -> dict[str, F64]:
        return {k: self.p[k] for k in self._SAVED}

    def _meta(self) -> dict[str, Any]:
        return {"lead": self.lead}

    def _restore(self, arrays: dict[str, F64], meta: dict[str, Any]) -> None:
        D, N = self.n_outputs, self.n_inputs
        shapes = {"A": (D, D), "W": (D, D), "H": (N, D), "d": (N,), "Q": (N, N), "v0": (D,),
                  "P0": (D, D)}
        lead = int(meta["lead"])
        if not 0 <= lead <= 100:
            raise ValueError(f"lead {lead} out of range")
        try:
            self._set({k: need(arrays, k, s) for k, s in shapes.items()}, lead)
        except np.linalg.LinAlgError as e:
            raise DecoderError(f"singular Kalman parameters: {e}") from e


class SteadyStateKalman(KalmanDecoder):
    """The same filter with its converged gain: v ← M v + K (z − d), M = (I − KH)A."""

    kind = "kalman_ss"
    RICCATI_ITERATIONS = 2000

    def _derived(self) -> None:
        A, W, H, HtQiH, HtQi = (self.p[k] for k in ("A", "W", "H", "HtQiH", "HtQi"))
        P = self.p["P0"]
        D = A.shape[0]
        Pp = P
        for _ in range(self.RICCATI_ITERATIONS):
            Pm = A @ P @ A.T + W
            Pp = _inv(_inv(Pm) + HtQiH)
            if np.allclose(Pp, P, rtol=1e-10, atol=1e-14):
                break
            P = Pp
        K = Pp @ HtQi
        self.p["K"] = K
        self.p["M"] = (np.eye(D) - K @ H) @ A

    def step(self, x: npt.ArrayLike) -> F64:
        z = self._observe(x)
        v = self.p["M"] @ self._v + self.p["K"] @ z if z is not None else self.p["A"] @ self._v
        self._v = v
        return v.copy()

    def macs_per_bin(self) -> int:
        return self.n_outputs * (self.n_inputs + self.n_outputs)
