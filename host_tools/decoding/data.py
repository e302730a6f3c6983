"""Binned spike counts + kinematics on disk → (X, Y) for the decoders.

Reads the Stevenson 2011 M1 reaching set as the spykesML authors binned it
(``m1_stevenson_2011.mat``: ``spikes`` units × bins, ``handVel`` 3 × bins, 50 ms bins; see the
data folder's PROVENANCE.md), the S1 set of the same source (``s1_data.mat``: ``spikes`` bins ×
units, ``vel`` bins × 2), or an ``.npz`` with ``X`` (bins × features), ``Y`` (bins × 2) and
``bin_s`` (what ``hubctl cursor`` saves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host_tools.decoding.base import F64, DecoderError, as_2d

DEFAULT_FILE = "m1_stevenson_2011.mat"


@dataclass
class Binned:
    """Features X (T, N) and velocities Y (T, 2), one row per bin of ``bin_s`` seconds."""

    X: F64
    Y: F64
    bin_s: float
    name: str


def load_binned(path: str | Path) -> Binned:
    """A folder (its ``m1_stevenson_2011.mat``), a ``.mat`` of either layout, or an ``.npz``."""
    p = Path(path)
    if p.is_dir():
        p = p / DEFAULT_FILE
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file (want a folder with {DEFAULT_FILE}, a .mat "
                                f"or an .npz with X, Y, bin_s)")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                X, Y, bin_s = z["X"], z["Y"], float(z["bin_s"])
        except (KeyError, ValueError, OSError) as e:
            raise DecoderError(f"{p}: want arrays X, Y, bin_s ({e})") from e
        return _checked(X, Y, bin_s, p.name)
    import scipy.io

    try:
        m = scipy.io.loadmat(p)
    except (ValueError, OSError, TypeError) as e:
        raise DecoderError(f"{p}: not a readable MATLAB file ({e})") from e
    if "handVel" in m and "spikes" in m:           # M1: (units, bins), (3, bins)
        X, Y = np.asarray(m["spikes"]).T, np.asarray(m["handVel"])[:2].T
        t = np.asarray(m.get("time", np.zeros((1, 2)))).ravel()
        bin_s = float(np.median(np.diff(t))) if t.size > 1 and np.ptp(t) > 0 else 0.05
    elif "vel" in m and "spikes" in m:             # S1: (bins, units), (bins, 2)
        X, Y, bin_s = np.asarray(m["spikes"]), np.asarray(m["vel"])[:, :2], 0.05
    else:
        raise DecoderError(f"{p}: want spikes + handVel (M1) or spikes + vel (S1); has "
                           f"{sorted(k for k in m if not k.startswith('__'))}")
    return _checked(X, Y, bin_s, p.name)


def _checked(X: object, Y: object, bin_s: float, name: str) -> Binned:
    x, y = as_2d(np.asarray(X, dtype=np.float64), "X"), as_2d(np.asarray(Y, dtype=np.float64), "Y")
    if x.shape[0] != y.shape[0]:
        raise DecoderError(f"{name}: {x.shape[0]} bins of features but {y.shape[0]} of "
                           f"kinematics")
    if not 0 < bin_s < 10:
        raise DecoderError(f"{name}: bin width {bin_s} s is not plausible")
    return Binned(x, y, bin_s, name)
