"""Front-end kernels: band-pass, LFP, reference, noise + detection, snippets, feature bins.

Each class owns one C state (freed by ``ffi.gc``), checks shapes and dtypes before the call,
passes numpy buffers without copying (``ffi.from_buffer``; buffers C writes must be writable)
and turns status codes into :class:`~hub.errors.KernelError` subclasses (bad arguments are
``ValueError`` s). Output buffers are allocated once per object and reused; results that outlive
the next call are returned as copies of just the filled part.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from hub.errors import InvalidDtype, InvalidInput, LibraryError
from hub.kernels._ffi import buf_in, buf_out, check, load, new_state

ffi, lib = load()

#: Mirrors ``nk_event`` (nk_detect.h); the size is checked against C at import.
EVENT_DTYPE = np.dtype(
    [
        ("sample", "<i8"),
        ("channel", "<i4"),
        ("unit", "<i4"),
        ("amplitude", "<f4"),
        ("threshold", "<f4"),
    ],
    align=True,
)
if ffi.sizeof("nk_event") != EVENT_DTYPE.itemsize:
    raise LibraryError(
        f"nk_event is {ffi.sizeof('nk_event')} bytes in C but {EVENT_DTYPE.itemsize} in numpy"
    )

F32 = npt.NDArray[np.float32]
I16 = npt.NDArray[np.int16]


def _require_block(x: np.ndarray[Any, Any], dtype: type, n_channels: int, what: str) -> None:
    if not isinstance(x, np.ndarray):
        raise InvalidDtype(f"{what}: expected a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise InvalidDtype(f"{what}: expected dtype {np.dtype(dtype).name}, got {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_channels:
        raise InvalidInput(f"{what}: expected shape (n_samples, {n_channels}), got {x.shape}")
    if not x.flags.c_contiguous:
        raise InvalidInput(f"{what}: array must be C-contiguous (sample-major)")


def butter_sos(order: int, btype: str, freqs: tuple[float, ...], fs: float) -> np.ndarray[Any, Any]:
    """Butterworth second-order sections, as scipy.signal.butter(..., output="sos")."""
    kinds = {"lowpass": lib.NK_BUTTER_LOW, "highpass": lib.NK_BUTTER_HIGH,
             "bandpass": lib.NK_BUTTER_BAND}
    if btype not in kinds:
        raise InvalidInput(f"btype must be one of {sorted(kinds)}, got {btype!r}")
    need = 2 if btype == "bandpass" else 1
    if len(freqs) != need:
        raise InvalidInput(f"{btype} needs {need} corner frequencies, got {len(freqs)}")
    f_lo, f_hi = freqs[0], freqs[-1]
    out = np.zeros((lib.NK_FILTER_MAX_SECTIONS, 6), dtype=np.float64)
    n = lib.nk_butter_sos(order, kinds[btype], f_lo, f_hi, fs, buf_out("double *", out),
                          lib.NK_FILTER_MAX_SECTIONS)
    if n < 0:
        raise InvalidInput(
            f"cannot design a {btype} Butterworth of order {order} at {freqs} Hz for fs={fs} Hz"
        )
    return out[:n].copy()


class Bandpass:
    """Causal IIR biquad cascade over all channels; int16 in, float32 out."""

    def __init__(self, n_channels: int, sos: np.ndarray[Any, Any]) -> None:
        sos = np.ascontiguousarray(sos, dtype=np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise InvalidInput(f"sos must have shape (n_sections, 6), got {sos.shape}")
        self.n_channels = n_channels
        out = ffi.new("nk_bandpass **")
        self._st = new_state(
            lib.nk_bandpass_new(n_channels, buf_in("double *", sos), sos.shape[0], out), out,
            lib.nk_bandpass_free, f"nk_bandpass_new ({n_channels} channels, sos {sos.tolist()})")

    def process(self, block: I16, out: F32 | None = None) -> F32:
        _require_block(block, np.int16, self.n_channels, "bandpass input")
        if out is None:
            out = np.empty(block.shape, dtype=np.float32)
        _require_block(out, np.float32, self.n_channels, "bandpass output")
        if out.shape[0] != block.shape[0]:
            raise InvalidInput("bandpass output must have as many rows as the input")
        check(lib.nk_bandpass_process(self._st, buf_in("int16_t *", block), buf_out("float *", out),
                                      block.shape[0]), "nk_bandpass_process")
        return out

    def process_f32(self, block: F32, out: F32 | None = None) -> F32:
        """The same cascade on float32 input (e.g. the decimated LFP stream)."""
        _require_block(block, np.float32, self.n_channels, "bandpass input")
        if out is None:
            out = np.empty(block.shape, dtype=np.float32)
        _require_block(out, np.float32, self.n_channels, "bandpass output")
        if out.shape[0] != block.shape[0]:
            raise InvalidInput("bandpass output must have as many rows as the input")
        check(lib.nk_bandpass_process_f32(self._st, buf_in("float *", block),
                                          buf_out("float *", out), block.shape[0]),
              "nk_bandpass_process_f32")
        return out

    def reset(self) -> None:
        lib.nk_bandpass_reset(self._st)

    def settle(self, x0: npt.NDArray[np.int16]) -> None:
        """Steady state for a constant input ``x0`` (one value per channel): resume after a
        gap without a step (nk_bandpass_settle)."""
        x = _row(x0, self.n_channels, "bandpass settle")
        check(lib.nk_bandpass_settle(self._st, buf_in("int16_t *", x)), "nk_bandpass_settle")


def _row(x0: npt.NDArray[np.int16], n_channels: int, what: str) -> npt.NDArray[np.int16]:
    x = np.ascontiguousarray(x0, dtype=np.int16)
    if x.shape != (n_channels,):
        raise InvalidInput(f"{what}: expected {n_channels} values, got shape {x.shape}")
    return x


def settle_samples(sos: np.ndarray[Any, Any], tol: float = 1e-3) -> int:
    """Samples until the cascade's slowest pole has decayed to ``tol`` of its start: how long
    a filter restarted after a gap rings (its impulse response envelope)."""
    r = 0.0
    for row in np.asarray(sos, dtype=np.float64):
        r = max(r, float(np.max(np.abs(np.roots([1.0, row[4], row[5]])))))
    if r <= 0.0:
        return 0
    if r >= 1.0:
        raise InvalidInput("the filter is not stable (a pole on or outside the unit circle)")
    return int(np.ceil(np.log(tol) / np.log(r)))


class LfpFilter:
    """Low-pass + decimation (LFP/ECoG band); keeps samples whose absolute index % q == 0."""

    def __init__(self, n_channels: int, sos: np.ndarray[Any, Any], decimation: int) -> None:
        sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.n_channels, self.decimation = n_channels, decimation
        out = ffi.new("nk_lfp **")
        self._st = new_state(
            lib.nk_lfp_new(n_channels, buf_in("double *", sos), sos.shape[0], decimation, out),
            out, lib.nk_lfp_free, f"nk_lfp_new ({n_channels} ch, decimation {decimation})")

    def process(self, block: I16, first_sample: int) -> F32:
        _require_block(block, np.int16, self.n_channels, "lfp input")
        cap = block.shape[0] // self.decimation + 1
        out = np.empty((cap, self.n_channels), dtype=np.float32)
        n = ffi.new("int32_t *")
        check(lib.nk_lfp_process(self._st, buf_in("int16_t *", block), block.shape[0],
                                 first_sample, buf_out("float *", out), cap, n), "nk_lfp_process")
        return out[: n[0]]

    def settle(self, x0: npt.NDArray[np.int16]) -> None:
        """As :meth:`Bandpass.settle`."""
        x = _row(x0, self.n_channels, "lfp settle")
        check(lib.nk_lfp_settle(self._st, buf_in("int16_t *", x)), "nk_lfp_settle")


class Reference:
    """Common reference over channel groups: "median", "average", or "robust" (the median of
    the channels not carrying a spike, scaled by the measured common-mode share; nk_reference.h).

    For "robust", ``halves`` (0/1 per channel) splits every group in two for the common-mode
    estimate (None: each group's first and second half in channel order) and ``tau_samples``
    is the time constant of its running statistics."""

    MODES: ClassVar[dict[str, int]] = {"median": lib.NK_REF_MEDIAN,
                                       "average": lib.NK_REF_AVERAGE,
                                       "robust": lib.NK_REF_ROBUST}

    def __init__(self, groups: npt.ArrayLike, mode: str = "median",
                 halves: npt.ArrayLike | None = None, tau_samples: float = 60000.0) -> None:
        g = np.ascontiguousarray(groups, dtype=np.int32)
        if g.ndim != 1 or g.size == 0:
            raise InvalidInput("groups must be a non-empty 1-D array: one group id per channel")
        if mode not in self.MODES:
            raise InvalidInput(f"reference mode must be one of {sorted(self.MODES)}, got {mode!r}")
        if g.min() < -1 or g.max() >= g.size:
            raise InvalidInput("group ids must lie in [-1, n_channels)")
        self.n_channels = int(g.size)
        self.mode = mode
        self._groups = g
        out = ffi.new("nk_reference **")
        self._st = new_state(
            lib.nk_reference_new(self.n_channels, buf_in("int32_t *", g), self.MODES[mode], out),
            out, lib.nk_reference_free, "nk_reference_new")
        if mode == "robust":
            h = None
            if halves is not None:
                h = np.ascontiguousarray(halves, dtype=np.int32)
                if h.shape != g.shape or not np.isin(h, (0, 1)).all():
                    raise InvalidInput("halves must hold 0 or 1 for every channel")
            if not (1.0 <= tau_samples < 1e12):
                raise InvalidInput(f"tau_samples={tau_samples}: need 1 ≤ τ < 1e12")
            check(lib.nk_reference_set_robust(
                self._st, ffi.NULL if h is None else buf_in("int32_t *", h), tau_samples),
                "nk_reference_set_robust")
        elif halves is not None:
            raise InvalidInput("halves are for the robust mode only")

    def process(self, block: F32) -> F32:
        """In place; returns the same array (which must be writable)."""
        _require_block(block, np.float32, self.n_channels, "reference input")
        check(lib.nk_reference_process(self._st, buf_out("float *", block), block.shape[0]),
              "nk_reference_process")
        return block

    def share(self) -> npt.NDArray[np.float32]:
        """Per group, the share of the reference subtracted (β; 1 in the median and average
        modes)."""
        out = np.zeros(max(1, int(lib.nk_reference_groups(self._st))), np.float32)
        check(lib.nk_reference_get_share(self._st, buf_out("float *", out)),
              "nk_reference_get_share")
        return out


@dataclass(frozen=True)
class DetectorConfig:
    """Threshold detection settings; samples are at the recording's rate."""

    polarity: str = "neg"          # "neg" | "pos" | "both"
    threshold: float = 5.0         # k: multiples of the MAD noise σ
    exclude_sweep: int = 12        # D: ± samples for alignment / de-duplication
    refractory: int = 30           # samples
    warmup: int = 6000             # samples before the first detection
    eta_fast: float = 0.1
    eta_slow: float = 2e-5


class Detector:
    """Running MAD noise + locally exclusive threshold detection (see nk_detect.h)."""

    def __init__(self, n_channels: int, cfg: DetectorConfig,
                 adjacency: list[list[int]] | None = None) -> None:
        pol = {"neg": lib.NK_POLARITY_NEG, "pos": lib.NK_POLARITY_POS,
               "both": lib.NK_POLARITY_BOTH}
        if cfg.polarity not in pol:
            raise InvalidInput(f"polarity must be neg, pos or both, got {cfg.polarity!r}")
        c = ffi.new("nk_detect_config *", {
            "n_channels": n_channels, "polarity": pol[cfg.polarity],
            "threshold": cfg.threshold, "exclude_sweep": cfg.exclude_sweep,
            "refractory": cfg.refractory, "warmup": cfg.warmup,
            "eta_fast": cfg.eta_fast, "eta_slow": cfg.eta_slow})
        self.n_channels, self.cfg = n_channels, cfg
        if adjacency is not None:
            if len(adjacency) != n_channels:
                raise InvalidInput(f"adjacency has {len(adjacency)} rows for {n_channels} channels")
            offsets = np.zeros(n_channels + 1, dtype=np.int32)
            offsets[1:] = np.cumsum([len(a) for a in adjacency])
            idx = np.array([j for a in adjacency for j in a] or [0], dtype=np.int32)
            self._adj = (offsets, idx)
            adj = (buf_in("int32_t *", offsets), buf_in("int32_t *", idx))
        else:
            adj = (ffi.NULL, ffi.NULL)
        out = ffi.new("nk_detect **")
        self._st = new_state(lib.nk_detect_new(c, *adj, out), out, lib.nk_detect_free,
                             f"nk_detect_new ({n_channels} channels, {cfg})")
        self._events = np.zeros(0, dtype=EVENT_DTYPE)
        self.latency = int(lib.nk_detect_latency(self._st))

    def process(self, block: F32, first_sample: int) -> np.ndarray[Any, Any]:
        """Events decided in this block (a view into a reused buffer: copy to keep)."""
        _require_block(block, np.float32, self.n_channels, "detector input")
        cap = int(lib.nk_detect_max_events(self._st, block.shape[0]))
        if self._events.size < cap:
            self._events = np.zeros(cap, dtype=EVENT_DTYPE)
        n = ffi.new("int32_t *")
        check(lib.nk_detect_process(self._st, buf_in("float *", block), block.shape[0],
                                    first_sample, buf_out("nk_event *", self._events),
                                    self._events.size, n), "nk_detect_process")
        return self._events[: n[0]]

    def resume(self, resume_sample: int, hold_off: int) -> np.ndarray[Any, Any]:
        """The input jumps to ``resume_sample`` (a gap): the spikes decided at the gap's edge
        (a copy); σ is held and nothing is decided for ``hold_off`` samples (nk_detect_resume)."""
        cap = int(lib.nk_detect_max_events(self._st, self.latency))
        if self._events.size < cap:
            self._events = np.zeros(cap, dtype=EVENT_DTYPE)
        n = ffi.new("int32_t *")
        check(lib.nk_detect_resume(self._st, resume_sample, hold_off,
                                   buf_out("nk_event *", self._events), self._events.size, n),
              "nk_detect_resume")
        return self._events[: n[0]].copy()

    def noise(self) -> F32:
        """Current σ per channel (counts)."""
        out = np.empty(self.n_channels, dtype=np.float32)
        check(lib.nk_detect_noise(self._st, buf_out("float *", out)), "nk_detect_noise")
        return out

    def seed_noise(self, sigma: npt.ArrayLike, warmup: int, prior_samples: int) -> None:
        """Starts from σ per channel (counts; e.g. measured at calibration) instead of a noise
        warm-up: decisions from sample ``warmup`` on, the estimate worth ``prior_samples``
        samples (nk_detect_seed_noise). Only before the first block."""
        z = np.ascontiguousarray(sigma, dtype=np.float32)
        if z.shape != (self.n_channels,):
            raise InvalidInput(f"noise seed must be ({self.n_channels},), got {z.shape}")
        check(lib.nk_detect_seed_noise(self._st, buf_in("float *", z), int(warmup),
                                       int(prior_samples)), "nk_detect_seed_noise")

    def set_threshold(self, k: float) -> None:
        check(lib.nk_detect_set_threshold(self._st, k), f"nk_detect_set_threshold({k})")
        self.cfg = dataclasses.replace(self.cfg, threshold=k)

    def reset(self) -> None:
        lib.nk_detect_reset(self._st)


class SnippetExtractor:
    """Waveforms [K][pre+post] around each event on its channel's K neighbours."""

    def __init__(self, neighbors: npt.ArrayLike, pre: int, post: int, max_block: int,
                 max_pending: int = 4096) -> None:
        nb = np.ascontiguousarray(neighbors, dtype=np.int32)
        if nb.ndim != 2:
            raise InvalidInput("neighbors must be (n_channels, K)")
        self.n_channels, self.k = nb.shape
        self.pre, self.post = pre, post
        c = ffi.new("nk_snippet_config *", {
            "n_channels": self.n_channels, "pre": pre, "post": post, "n_neighbors": self.k,
            "max_block": max_block, "max_pending": max_pending})
        out = ffi.new("nk_snippet **")
        self._st = new_state(lib.nk_snippet_new(c, buf_in("int32_t *", nb), out), out,
                             lib.nk_snippet_free, f"nk_snippet_new (pre={pre} post={post} "
                             f"K={self.k} max_block={max_block})")
        self._nb = nb
        self._ev = np.zeros(max_pending, dtype=EVENT_DTYPE)
        self._wf = np.zeros((max_pending, self.k, pre + post), dtype=np.float32)

    def process(self, block: F32, first_sample: int,
                events: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], F32]:
        """(events, waveforms) completed by this block; views into reused buffers."""
        _require_block(block, np.float32, self.n_channels, "snippet input")
        ev = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
        n = ffi.new("int32_t *")
        check(lib.nk_snippet_process(self._st, buf_in("float *", block), block.shape[0],
                                     first_sample, buf_in("nk_event *", ev), ev.size,
                                     buf_out("nk_event *", self._ev), buf_out("float *", self._wf),
                                     self._ev.size, n), "nk_snippet_process")
        return self._ev[: n[0]], self._wf[: n[0]]

    def resume(self, resume_sample: int, events: np.ndarray[Any, Any]) -> None:
        """The input jumps to ``resume_sample``: waiting events and ``events`` are dropped and
        counted (nk_snippet_resume)."""
        ev = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
        check(lib.nk_snippet_resume(self._st, resume_sample, buf_in("nk_event *", ev), ev.size),
              "nk_snippet_resume")

    @property
    def dropped(self) -> int:
        return int(lib.nk_snippet_dropped(self._st))

    @property
    def pending(self) -> int:
        return int(lib.nk_snippet_pending(self._st))


@dataclass
class FeatureBins:
    """Completed bins: index (absolute bin number), samples seen, counts and power per channel."""

    index: npt.NDArray[np.int64]
    samples: npt.NDArray[np.int32]
    counts: npt.NDArray[np.int32]   # (n_bins, n_channels)
    power: F32                      # (n_bins, n_channels), mean x² in counts²


class FeatureBinner:
    """Threshold-crossing counts and spike-band power per bin (see nk_features.h)."""

    def __init__(self, n_channels: int, bin_samples: int, latency: int, max_block: int) -> None:
        out = ffi.new("nk_features **")
        self._st = new_state(lib.nk_features_new(n_channels, bin_samples, latency, out), out,
                             lib.nk_features_free, f"nk_features_new (bin {bin_samples} samples)")
        self.n_channels, self.bin_samples = n_channels, bin_samples
        cap = int(lib.nk_features_max_bins(self._st, max_block))
        self._idx = np.zeros(cap, dtype=np.int64)
        self._seen = np.zeros(cap, dtype=np.int32)
        self._cnt = np.zeros((cap, n_channels), dtype=np.int32)
        self._pow = np.zeros((cap, n_channels), dtype=np.float32)

    def process(self, block: F32, first_sample: int, events: np.ndarray[Any, Any]) -> FeatureBins:
        _require_block(block, np.float32, self.n_channels, "features input")
        ev = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
        n = ffi.new("int32_t *")
        check(lib.nk_features_process(
            self._st, buf_in("float *", block), block.shape[0], first_sample,
            buf_in("nk_event *", ev), ev.size, buf_out("int64_t *", self._idx),
            buf_out("int32_t *", self._seen), buf_out("int32_t *", self._cnt),
            buf_out("float *", self._pow), self._idx.size, n), "nk_features_process")
        k = n[0]
        return FeatureBins(self._idx[:k].copy(), self._seen[:k].copy(), self._cnt[:k].copy(),
                           self._pow[:k].copy())

    def resume(self, events: np.ndarray[Any, Any], resume_sample: int) -> FeatureBins:
        """The input jumps to ``resume_sample``: counts the edge ``events`` and returns the bins
        that ended before the gap, with the samples they saw (nk_features_resume)."""
        ev = np.ascontiguousarray(events, dtype=EVENT_DTYPE)
        cap = int(lib.nk_features_max_resume_bins(self._st))
        idx, seen = np.zeros(cap, np.int64), np.zeros(cap, np.int32)
        cnt = np.zeros((cap, self.n_channels), np.int32)
        pw = np.zeros((cap, self.n_channels), np.float32)
        n = ffi.new("int32_t *")
        check(lib.nk_features_resume(
            self._st, buf_in("nk_event *", ev), ev.size, resume_sample, buf_out("int64_t *", idx),
            buf_out("int32_t *", seen), buf_out("int32_t *", cnt), buf_out("float *", pw), cap, n),
            "nk_features_resume")
        k = n[0]
        return FeatureBins(idx[:k], seen[:k], cnt[:k], pw[:k])

    @property
    def late(self) -> int:
        return int(lib.nk_features_late(self._st))
