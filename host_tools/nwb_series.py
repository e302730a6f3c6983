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
    """Channels whose delivered raw samples are the same sample ranges: one ElectricalSeries."""

    channels: list[int]
    blocks: npt.NDArray[Any]        # BLOCK_DTYPE, in order
    rows: int

    @property
    def contiguous(self) -> bool:
        b = self.blocks
        return bool(np.all(b["session"] == b["session"][0]) and np.all(
            b["first"][1:] == b["first"][:-1] + b["n"][:-1]))


def raw_groups(scan: Scan) -> list[RawGroup]:
    """Channels grouped by identical delivered blocks, largest group first."""
    by_sig: dict[bytes, RawGroup] = {}
    for ch in sorted(scan.raw):
        blocks = np.asarray(scan.raw[ch].blocks.array()).copy()
        if not blocks.size:
            continue
        sig = hashlib.sha1(blocks.tobytes()).digest()
        g = by_sig.get(sig)
        if g is None:
            by_sig[sig] = RawGroup([ch], blocks, int(blocks["n"].sum()))
        else:
            g.channels.append(ch)
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
    maps = [scan.raw[c].data.array() for c in g.channels]

    def read(a: int, b: int) -> npt.NDArray[np.int16]:
        return np.column_stack([m[a:b] for m in maps]).astype(np.int16, copy=False)
    return read


def times_reader(clock: Clock, blocks: npt.NDArray[Any]
                 ) -> Callable[[int, int], npt.NDArray[np.float64]]:
    def read(a: int, b: int) -> npt.NDArray[np.float64]:
        sess, smp = block_samples(blocks, a, b)
        return clock.seconds(sess, smp)
    return read


assert BLOCK_DTYPE.names == ("session", "first", "n")
