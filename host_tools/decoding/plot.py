"""Figures for decode-eval: scores per decoder and a stretch of decoded velocity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from host_tools.decoding.base import F64
from host_tools.decoding.evaluate import DecoderScore


def plot_eval(scores: dict[str, DecoderScore], Y: F64, bin_s: float, title: str,
              path: Path, window_s: float = 20.0) -> Path:
    """Bars of cross-validated R² and correlation (one dot per fold) beside decoded vs true
    hand velocity (x) on ``window_s`` seconds of held-out data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), width_ratios=[1, 1.6])
    x = np.arange(len(names))
    for off, key, color in ((-0.2, "r2", "tab:blue"), (0.2, "corr", "tab:orange")):
        folds = [getattr(scores[n], f"{key}_folds") for n in names]
        ax.bar(x + off, [np.mean(f) for f in folds], 0.38, color=color,
               label="R²" if key == "r2" else "correlation")
        for i, f in enumerate(folds):
            ax.plot(np.full(len(f), x[i] + off), f, "k.", ms=3)
    for i, name in enumerate(names):
        r2 = float(np.mean(scores[name].r2_folds))
        ax.text(x[i] - 0.2, r2 + 0.01, f"{r2:.3f}", ha="center", fontsize=7, rotation=90,
                va="bottom")
    ax.axhline(0.8, color="k", lw=0.6, ls="--")
    ax.text(-0.55, 0.81, "target R² 0.80", fontsize=7, ha="left")
    ax.set_xticks(x, [k + ("" if scores[k].causal else "\n(non-causal)") for k in names])
    ax.set_ylim(0, 1)
    ax.set_ylabel("hand velocity, 5-fold contiguous CV")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    n = min(len(Y), int(window_s / bin_s))
    start = len(Y) // 2
    t = np.arange(n) * bin_s
    ax2.plot(t, Y[start:start + n, 0], "k", lw=2, label="hand")
    for name in names:
        ax2.plot(t, scores[name].prediction[start:start + n, 0], lw=0.9, label=name)
    ax2.set_xlabel(f"s (held-out bins from {start * bin_s:.0f} s)")
    ax2.set_ylabel("x velocity")
    ax2.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
