"""What every decoder is: binned neural features in, 2-D velocity out, one bin at a time.

A decoder is fitted on (X, Y) — X (T, N) features per bin (spike counts, threshold crossings,
band power), Y (T, D) kinematics (hand or cursor velocity) — and then run causally: ``step(x)``
takes the newest bin and returns the estimate for that bin using only it and earlier bins.
``decode(X)`` runs a whole sequence from a fresh state and equals stepping bin by bin.

Files are a versioned ``.npz`` read with ``allow_pickle=False``: named float arrays plus one JSON
string of scalar parameters (``__meta__``), the kind (``__kind__``) and the format version
(``__version__``); :func:`load_decoder` refuses anything else with a message saying what.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
FORMAT = "implant-hub-decoder"
VERSION = 1


class DecoderError(ValueError):
    """Bad decoder input (shapes, an unfitted decoder) or an unreadable decoder file."""


def as_2d(a: npt.ArrayLike, what: str) -> F64:
    """``a`` as a float64 (T, K) array; raises DecoderError naming ``what`` otherwise."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise DecoderError(f"{what}: expected a non-empty (bins, columns) array, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DecoderError(f"{what}: contains NaN or infinite values")
    return x


class Decoder(ABC):
    """Causal bin-by-bin decoder. Subclasses set ``kind`` and implement the abstract methods."""

    kind: ClassVar[str] = ""
    causal: ClassVar[bool] = True

    def __init__(self) -> None:
        self.n_inputs = 0
        self.n_outputs = 0
        #: hyper-parameters chosen by inner validation (reported by decode-eval)
        self.chosen: dict[str, float] = {}

    # ------------------------------------------------------------------ the contract
    @abstractmethod
    def fit(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> Decoder:
        """Fits on features X (T, N) and kinematics Y (T, D); hyper-parameters are chosen by
        validation inside (X, Y) only. Returns self."""

    @abstractmethod
    def reset(self) -> None:
        """Forgets the history: the next ``step`` is the first bin of a new sequence."""

    @abstractmethod
    def step(self, x: npt.ArrayLike) -> F64:
        """The estimate (D,) for the newest bin ``x`` (N,), from it and earlier bins only."""

    @abstractmethod
    def _arrays(self) -> dict[str, F64]:
        """The fitted state as named arrays (for ``save``)."""

    @abstractmethod
    def _restore(self, arrays: dict[str, F64], meta: dict[str, Any]) -> None:
        """Inverse of ``_arrays``/``_meta``."""

    def _meta(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def macs_per_bin(self) -> int:
        """Multiply-accumulates one ``step`` costs (the per-bin budget on the hub)."""

    # ------------------------------------------------------------------ shared behaviour
    def decode(self, X: npt.ArrayLike) -> F64:
        """Runs a whole sequence from a fresh state (same as ``reset`` then ``step`` per bin)."""
        x = self._check_x(X)
        self.reset()
        out = np.empty((x.shape[0], self.n_outputs))
        for t in range(x.shape[0]):
            out[t] = self.step(x[t])
        return out

    def _check_fit(self, X: npt.ArrayLike, Y: npt.ArrayLike, min_bins: int = 10) -> tuple[F64, F64]:
        x, y = as_2d(X, "X"), as_2d(Y, "Y")
        if x.shape[0] != y.shape[0]:
            raise DecoderError(f"X has {x.shape[0]} bins but Y has {y.shape[0]}")
        if x.shape[0] < min_bins:
            raise DecoderError(f"{self.kind}: need at least {min_bins} bins to fit, got "
                               f"{x.shape[0]}")
        self.n_inputs, self.n_outputs = x.shape[1], y.shape[1]
        return x, y

    def _check_x(self, X: npt.ArrayLike) -> F64:
        if not self.n_inputs:
            raise DecoderError(f"{self.kind}: not fitted")
        x = as_2d(X, "X")
        if x.shape[1] != self.n_inputs:
            raise DecoderError(f"{self.kind}: fitted on {self.n_inputs} features, got "
                               f"{x.shape[1]}")
        return x

    def _check_bin(self, x: npt.ArrayLike) -> F64:
        v = np.asarray(x, dtype=np.float64).ravel()
        if not self.n_inputs:
            raise DecoderError(f"{self.kind}: not fitted")
        if v.size != self.n_inputs:
            raise DecoderError(f"{self.kind}: a bin has {self.n_inputs} features, got {v.size}")
        return v

    def save(self, path: str | Path) -> Path:
        """Writes the versioned ``.npz`` (no pickles)."""
        if not self.n_inputs:
            raise DecoderError(f"{self.kind}: not fitted, nothing to save")
        meta = {"n_inputs": self.n_inputs, "n_outputs": self.n_outputs, "chosen": self.chosen,
                **self._meta()}
        arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float64)
                                  for k, v in self._arrays().items()}
        for k in arrays:
            if k.startswith("__"):
                raise DecoderError(f"array name {k!r} is reserved")
        p = Path(path)
        with p.open("wb") as f:
            np.savez(f, __format__=np.array(FORMAT), __version__=np.array(VERSION),
                     __kind__=np.array(self.kind), __meta__=np.array(json.dumps(meta)), **arrays)
        return p


def load_decoder(path: str | Path) -> Decoder:
    """Reads a decoder written by :meth:`Decoder.save` (any registered kind)."""
    from host_tools.decoding.registry import DECODERS

    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
            need = {"__format__", "__version__", "__kind__", "__meta__"}
            if not need <= files:
                raise DecoderError(f"{p}: not a decoder file (missing {sorted(need - files)})")
            fmt, version = str(z["__format__"]), int(z["__version__"])
            kind, meta = str(z["__kind__"]), json.loads(str(z["__meta__"]))
            arrays = {k: np.asarray(z[k], dtype=np.float64) for k in files - need}
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, DecoderError):
            raise
        raise DecoderError(f"{p}: unreadable decoder file ({e})") from e
    if fmt != FORMAT:
        raise DecoderError(f"{p}: format {fmt!r}, expected {FORMAT!r}")
    if version != VERSION:
        raise DecoderError(f"{p}: decoder file version {version}, this reader knows {VERSION}")
    if kind not in DECODERS:
        raise DecoderError(f"{p}: unknown decoder kind {kind!r} (known: {sorted(DECODERS)})")
    if not isinstance(meta, dict):
        raise DecoderError(f"{p}: __meta__ is not a JSON object")
    dec = DECODERS[kind]()
    try:
        dec.n_inputs, dec.n_outputs = int(meta["n_inputs"]), int(meta["n_outputs"])
        dec.chosen = {str(k): float(v) for k, v in dict(meta.get("chosen", {})).items()}
        dec._restore(arrays, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise DecoderError(f"{p}: inconsistent {kind} decoder file ({e})") from e
    dec.reset()
    log.debug("loaded %s decoder (%d inputs) from %s", kind, dec.n_inputs, p)
    return dec


def need(arrays: dict[str, F64], name: str, shape: tuple[int, ...]) -> F64:
    """``arrays[name]`` checked against ``shape`` (for ``_restore``)."""
    if name not in arrays:
        raise KeyError(f"array {name!r} missing")
    a = arrays[name]
    if a.shape != shape:
        raise ValueError(f"array {name!r} has shape {a.shape}, expected {shape}")
    return a
