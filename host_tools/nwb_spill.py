"""Append-only arrays on disk for the NWB conversion: one pass over the packet log spills what
is big (raw samples, snippets, feature bins, spikes) so memory stays bounded whatever the
session's length; the writer then streams them into HDF5 from memory maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: Bytes held per spill before they go to disk (many spills: one per raw channel, spike label).
BUFFER_BYTES = 1 << 18


class Spill:
    """Rows of a fixed dtype and row shape, appended; read back as a memory map. The file is
    opened only to write a full buffer, so thousands of spills need no open descriptors."""

    def __init__(self, path: Path, dtype: npt.DTypeLike, row_shape: tuple[int, ...] = (),
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self.path = path
        self.buffer_bytes = buffer_bytes
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._buf: list[bytes] = []
        self._rows: list[tuple[Any, ...]] = []
        self._buffered = 0
        path.write_bytes(b"")

    def append(self, rows: npt.NDArray[Any]) -> None:
        self._flush_rows()                   # keep the order of rows
        a = np.ascontiguousarray(rows, dtype=self.dtype)
        if a.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {a.shape[1:]}, "
                             f"want {self.row_shape}")
        self._buf.append(a.tobytes())
        self._buffered += a.nbytes
        self.rows += a.shape[0]
        if self._buffered >= self.buffer_bytes:
            self.flush()

    def append_row(self, row: tuple[Any, ...]) -> None:
        """One row as a tuple (structured dtypes): batched, far cheaper than ``append``."""
        self._rows.append(row)
        if len(self._rows) >= 1024:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            a = np.array(rows, self.dtype)
            self._buf.append(a.tobytes())
            self._buffered += a.nbytes
            self.rows += a.shape[0]

    def flush(self) -> None:
        self._flush_rows()
        if self._buf:
            with self.path.open("ab") as f:
                f.write(b"".join(self._buf))
            self._buf.clear()
            self._buffered = 0

    def read(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Rows [start, stop) as an in-memory copy (the map is dropped at once, so pages read
        do not stay in this process's resident memory)."""
        m = self.array()
        out = np.array(m[start:stop])
        del m
        return out

    def take(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """The given rows (sorted), as an in-memory copy."""
        m = self.array()
        out = np.array(m[rows]) if rows.size else np.zeros((0, *self.row_shape), self.dtype)
        del m
        return out

    def array(self) -> npt.NDArray[Any]:
        """Everything appended, memory-mapped read-only (an empty array when nothing was)."""
        self.flush()
        if self.rows == 0:
            return np.zeros((0, *self.row_shape), self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r",
                         shape=(self.rows, *self.row_shape))
