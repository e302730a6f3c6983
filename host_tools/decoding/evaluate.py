"""Contiguous-block cross-validation of decoders on binned data.

The session is cut into ``folds`` contiguous blocks; each block is decoded once by a decoder
fitted on the others. A decoder's hyper-parameters are chosen inside ``fit`` by validation on
its training data alone, so the test block is never seen before it is scored. Scores per fold:
R² and Pearson correlation of each velocity component, averaged over x and y; the result is
the mean over folds (per-fold values are kept).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import F64
from host_tools.decoding.registry import make_decoder

log = logging.getLogger(__name__)


def corr_score(Y: F64, P: F64) -> float:
    """Pearson correlation per output column, averaged."""
    cs = []
    for i in range(Y.shape[1]):
        a, b = Y[:, i] - Y[:, i].mean(), P[:, i] - P[:, i].mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        cs.append(float((a * b).sum()) / den if den > 0 else 0.0)
    return float(np.mean(cs))


def r2_columns(Y: F64, P: F64) -> list[float]:
    ss_res = ((Y - P) ** 2).sum(0)
    ss_tot = np.maximum(((Y - Y.mean(0)) ** 2).sum(0), 1e-300)
    return [float(v) for v in 1.0 - ss_res / ss_tot]


@dataclass
class DecoderScore:
    """One decoder's cross-validated scores."""

    name: str
    causal: bool
    r2_folds: list[float] = field(default_factory=list)
    corr_folds: list[float] = field(default_factory=list)
    r2_xy_folds: list[list[float]] = field(default_factory=list)
    chosen: list[dict[str, float]] = field(default_factory=list)
    fit_s: list[float] = field(default_factory=list)
    macs_per_bin: int = 0
    prediction: F64 = field(default_factory=lambda: np.zeros((0, 2)))

    def to_json(self) -> dict[str, Any]:
        r2xy = np.asarray(self.r2_xy_folds)
        return {
            "r2": round(float(np.mean(self.r2_folds)), 4),
            "corr": round(float(np.mean(self.corr_folds)), 4),
            "causal": self.causal,
            "r2_x": round(float(r2xy[:, 0].mean()), 4) if r2xy.size else None,
            "r2_y": round(float(r2xy[:, 1].mean()), 4) if r2xy.ndim == 2 and r2xy.shape[1] > 1
            else None,
            "r2_folds": [round(v, 4) for v in self.r2_folds],
            "corr_folds": [round(v, 4) for v in self.corr_folds],
            "r2_sd": round(float(np.std(self.r2_folds)), 4),
            "hyperparameters_per_fold": self.chosen,
            "fit_seconds_per_fold": [round(v, 2) for v in self.fit_s],
            "macs_per_bin": self.macs_per_bin,
        }


def fold_blocks(T: int, k: int) -> list[npt.NDArray[np.intp]]:
    if k < 2 or 2 * k > T:
        raise ValueError(f"cannot cut {T} bins into {k} folds")
    return list(np.array_split(np.arange(T), k))


def cross_validate(X: F64, Y: F64, kinds: list[str], folds: int = 5,
                   progress: Callable[[str], None] | None = None) -> dict[str, DecoderScore]:
    """Scores every decoder kind with ``folds``-fold contiguous-block cross-validation; the
    out-of-fold predictions (all bins) are kept in ``DecoderScore.prediction``."""
    blocks = fold_blocks(X.shape[0], folds)
    out: dict[str, DecoderScore] = {}
    for kind in kinds:
        score: DecoderScore | None = None
        pred = np.zeros_like(Y)
        for i, test in enumerate(blocks):
            train = np.ones(X.shape[0], bool)
            train[test] = False
            dec = make_decoder(kind)
            if score is None:
                score = DecoderScore(kind, dec.causal)
            t0 = time.perf_counter()
            # the training data is the concatenation of the blocks before and after the test
            # block: a lag window spans the seam for a few bins of thousands
            dec.fit(X[train], Y[train])
            score.fit_s.append(time.perf_counter() - t0)
            P = dec.decode(X[test])
            pred[test] = P
            score.r2_folds.append(float(np.mean(r2_columns(Y[test], P))))
            score.r2_xy_folds.append(r2_columns(Y[test], P))
            score.corr_folds.append(corr_score(Y[test], P))
            score.chosen.append(dec.chosen)
            score.macs_per_bin = dec.macs_per_bin()
            if progress is not None:
                progress(f"{kind}: fold {i + 1}/{folds} R² {score.r2_folds[-1]:.3f} "
                         f"corr {score.corr_folds[-1]:.3f} ({score.fit_s[-1]:.1f} s) {dec.chosen}")
        assert score is not None
        score.prediction = pred
        out[kind] = score
    return out
