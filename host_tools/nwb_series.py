"""The NWB datasets that are big, streamed from the scan's spills (bounded memory): raw
broadband (ElectricalSeries), snippets (SpikeEventSeries), feature bins (TimeSeries).

Every dataset is written through a :class:`SpillIterator` (hdmf's GenericDataChunkIterator over
a function that reads any row range), compressed with gzip (+ byte shuffle)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hdmf.backends.hdf5.h5_utils import H5DataIO
from hdmf.data_utils import GenericDataChunkIterator

from host_tools.nwb_scan import BLOCK_DTYPE, Scan

log = logging.getLogger(__name__)

#: Rows of a dataset read and compressed at once (memory per dataset stays about this × row).
CHUNK_ROWS = 32768
GZIP_LEVEL = 4


class SpillIterator(GenericDataChunkIterator):  # type: ignore[misc]
    """A dataset of ``shape`` whose rows come from ``read(start, stop)``."""

    def __init__(self, read: Callable[[int, int], npt.NDArray[Any]], shape: tuple[int, ...],
                 dtype: npt.DTypeLike, chunk_rows: int = CHUNK_ROWS) -> None:
        self._read, self._shape, self._dtype = read, tuple(shape), np.dtype(dtype)
        rows = max(1, min(chunk_rows, shape[0]))
        chunk = (rows, *shape[1:])
        super().__init__(chunk_shape=chunk, buffer_shape=chunk)

    def _get_data(self, selection: tuple[slice, ...]) -> npt.NDArray[Any]:
        rows = selection[0]
        out = self._read(rows.start or 0, rows.stop)
        return np.asarray(out)[(slice(None), *selection[1:])]

    def _get_maxshape(self) -> tuple[int, ...]:
        return self._shape

    def _get_dtype(self) -> np.dtype[Any]:
        return self._dtype


def compressed(read: Callable[[int, int], npt.NDArray[Any]], shape: tuple[int, ...],
               dtype: npt.DTypeLike, shuffle: bool = False) -> H5DataIO | npt.NDArray[Any]:
    """A gzip-compressed dataset streamed from ``read``; small ones are written directly."""
    if shape[0] == 0:
        return np.zeros(shape, dtype)
    return H5DataIO(SpillIterator(read, shape, dtype), compression="gzip",
                    compression_opts=GZIP_LEVEL, shuffle=shuffle)


# ---------------------------------------------------------------- time
class Clock:
    """Hub (session, sample) → seconds since the NWB session start, through each session's
    drift-corrected time-sync fit."""

    def __init__(self, scan: Scan) -> None:
        self.fits = {s.index: s.fit for s in scan.sessions.values()}
        starts = [scan.first_ns or 0]
        for s in scan.sessions.values():
            if s.first_sample is not None:
                starts.append(int(s.fit.to_host_ns(s.first_sample)))
        #: host monotonic ns of time zero: the earliest of the first record and first sample
        self.t0_ns = min(starts)

    def seconds(self, session: npt.ArrayLike, sample: npt.ArrayLike) -> npt.NDArray[np.float64]:
        sess = np.asarray(session)
        smp = np.asarray(sample, np.int64)
        out = np.empty(smp.shape, np.float64)
        for idx in np.unique(sess):
            m = sess == idx
            out[m] = (self.fits[int(idx)].to_host_ns(smp[m]) - self.t0_ns) / 1e9
        return out

    def host_seconds(self, host_ns: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return (np.asarray(host_ns, np.int64) - self.t0_ns) / 1e9


# ---------------------------------------------------------------- raw
@dataclass
class RawGroup:
    """Channels whose delivered raw samples are the same sample ranges: one ElectricalSeries.
    ``src[ch]`` is each block's first row in that channel's spill."""

    channels: list[int]
    blocks: npt.NDArray[Any]        # BLOCK_DTYPE, in order
    src: dict[int, npt.NDArray[np.int64]]
    rows: int

    @property
    def contiguous(self) -> bool:
        b = self.blocks
        return bool(np.all(b["session"] == b["session"][0]) and np.all(
            b["first"][1:] == b["first"][:-1] + b["n"][:-1]))


def cut_gaps(blocks: npt.NDArray[Any], gaps: dict[int, npt.NDArray[np.int64]]
             ) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], int]:
    """Blocks minus the samples inside reported gaps (a hub that held samples over a short
    implant gap sent values nobody measured): (blocks, first spill row of each, rows cut)."""
    src = np.concatenate([[0], np.cumsum(blocks["n"][:-1].astype(np.int64))])
    if not gaps or not any(g.size for g in gaps.values()):
        return blocks, src, 0
    out_b, out_s, cut = [], [], 0
    for i, blk in enumerate(blocks):
        g = gaps.get(int(blk["session"]))
        a, n = int(blk["first"]), int(blk["n"])
        if g is None or not g.size or not np.any((g[:, 0] < a + n) & (g[:, 1] > a)):
            out_b.append(blk)
            out_s.append(src[i])
            continue
        lo = a
        for ga, gb in g[(g[:, 0] < a + n) & (g[:, 1] > a)]:
            if ga > lo:
                out_b.append(np.array((blk["session"], lo, ga - lo), BLOCK_DTYPE))
                out_s.append(src[i] + lo - a)
            lo = max(lo, int(gb))
        if lo < a + n:
            out_b.append(np.array((blk["session"], lo, a + n - lo), BLOCK_DTYPE))
            out_s.append(src[i] + lo - a)
    nb = np.array(out_b, BLOCK_DTYPE) if out_b else np.zeros(0, BLOCK_DTYPE)
    cut = int(blocks["n"].sum()) - int(nb["n"].sum())
    return nb, np.array(out_s, np.int64), cut


def raw_series_name(i: int, channels: list[int]) -> str:
    """The acquisition name of raw group ``i`` (the largest is ElectricalSeriesRaw)."""
    return "ElectricalSeriesRaw" if i == 0 else f"ElectricalSeriesRaw_ch{channels[0]}"


def raw_groups(scan: Scan) -> list[RawGroup]:
    """Channels grouped by identical delivered blocks (gaps cut), largest group first."""
    by_sig: dict[bytes, RawGroup] = {}
    gaps = scan.gap_ranges()
    for ch in sorted(scan.raw):
        blocks, src, _cut = cut_gaps(np.asarray(scan.raw[ch].blocks.array()).copy(), gaps)
        if not blocks.size:
            continue
        sig = hashlib.sha1(blocks.tobytes()).digest()
        g = by_sig.get(sig)
        if g is None:
            by_sig[sig] = RawGroup([ch], blocks, {ch: src}, int(blocks["n"].sum()))
        else:
            g.channels.append(ch)
            g.src[ch] = src
    return sorted(by_sig.values(), key=lambda g: (-g.rows * len(g.channels), g.channels[0]))


def block_samples(blocks: npt.NDArray[Any], start: int, stop: int
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(session, sample index) of rows [start, stop) of a series made of ``blocks``."""
    cum = np.concatenate([[0], np.cumsum(blocks["n"].astype(np.int64))])
    rows = np.arange(start, stop, dtype=np.int64)
    i = np.searchsorted(cum, rows, side="right") - 1
    return (blocks["session"][i].astype(np.int64),
            blocks["first"][i].astype(np.int64) + rows - cum[i])


def raw_reader(scan: Scan, g: RawGroup) -> Callable[[int, int], npt.NDArray[np.int16]]:
    """Rows [a, b) of the group's series, gathered from each channel's spill."""
    maps = [scan.raw[c].data for c in g.channels]
    cum = np.concatenate([[0], np.cumsum(g.blocks["n"].astype(np.int64))])
    srcs = [g.src[c] for c in g.channels]
    direct = all(np.array_equal(s, cum[:-1]) for s in srcs)

    def column(m: Any, src: npt.NDArray[np.int64], a: int, b: int) -> npt.NDArray[np.int16]:
        if direct:
            return np.asarray(m.read(a, b))
        i0 = int(np.searchsorted(cum, a, side="right")) - 1
        i1 = int(np.searchsorted(cum, b, side="left"))
        parts = []
        for i in range(i0, i1):
            lo, hi = max(a, int(cum[i])), min(b, int(cum[i + 1]))
            off = int(src[i]) + lo - int(cum[i])
            parts.append(np.asarray(m.read(off, off + hi - lo)))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def read(a: int, b: int) -> npt.NDArray[np.int16]:
        return np.column_stack([column(m, s, a, b) for m, s in zip(maps, srcs, strict=True)]
                               ).astype(np.int16, copy=False)
    return read


def times_reader(clock: Clock, blocks: npt.NDArray[Any]
                 ) -> Callable[[int, int], npt.NDArray[np.float64]]:
    def read(a: int, b: int) -> npt.NDArray[np.float64]:
        sess, smp = block_samples(blocks, a, b)
        return clock.seconds(sess, smp)
    return read


assert BLOCK_DTYPE.names == ("session", "first", "n")
