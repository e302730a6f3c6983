"""Loads the nk kernels library through cffi's out-of-line ABI mode, and checks it.

The declarations were compiled at build time into ``hub/kernels/_nk_cffi.py`` (``make kernels``
runs :mod:`hub.kernels._build`): nothing is parsed here, and that module is the same on every
architecture. Library lookup: ``$NK_LIB`` (a path), then ``hub/kernels/_native/
libnk_<machine>.so`` (what ``make kernels`` and the hub wheel install), then ``build/native``.

At load the library must match the Python side (:func:`abi_check`): the same ``NK_VERSION``,
every declared function exported, and every public struct the same size in C as cffi lays it
out. A mismatch is a :class:`~hub.errors.LibraryError` naming what differs, never a crash later.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hub.errors import (
    InvalidInput,
    KernelError,
    LibraryError,
    ReadOnlyBuffer,
    kernel_error,
)

__all__ = ["KernelError", "LibraryError", "abi_check", "buf_in", "buf_out", "check",
           "ffi_string", "library_path", "load"]

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent.parent


def _generated() -> Any:
    try:
        from hub.kernels import _nk_cffi
    except ImportError as e:
        raise LibraryError("hub/kernels/_nk_cffi.py is missing: run `make kernels`") from e
    include = _REPO / "c_kernels" / "include"
    if include.is_dir():      # a source tree: the headers may have moved on since the build
        from hub.kernels._build import cdef_digest, cdef_source

        if cdef_digest(cdef_source(include)) != _nk_cffi.CDEF_SHA256:
            raise LibraryError("c_kernels/include changed since hub/kernels/_nk_cffi.py was "
                               "built: run `make kernels`")
    return _nk_cffi


def library_path() -> Path:
    """The libnk this process loads (see the module docstring for the order)."""
    env = os.environ.get("NK_LIB")
    if env:
        return Path(env)
    machine = platform.machine()
    for p in (_HERE / "_native" / f"libnk_{machine}.so", _REPO / "build" / "native" / "libnk.so"):
        if p.exists():
            return p
    raise LibraryError(f"libnk for {machine} not found: run `make kernels` (or set NK_LIB)")


def abi_check(ffi: Any, lib: Any, where: str = "libnk") -> None:
    """Raises LibraryError unless ``lib`` is the library ``ffi`` was built for."""
    want, have = int(lib.NK_VERSION), int(lib.nk_version())
    if want != have:
        raise LibraryError(f"{where}: library version {have}, the Python side was built for "
                           f"{want}: rebuild one of them (make kernels / make bundle)")
    for name in dir(lib):
        try:
            getattr(lib, name)
        except AttributeError as e:     # declared in a cffi section, not exported by the .so
            raise LibraryError(f"{where}: {name} is declared but not exported ({e})") from e
    for name in ffi.list_types()[0]:
        try:
            size = ffi.sizeof(name)
        except ffi.error:               # opaque state struct: no layout on this side
            continue
        if ffi.typeof(name).kind != "struct":
            continue
        c_size = int(lib.nk_sizeof(name.encode()))
        if c_size != size:
            raise LibraryError(
                f"{where}: struct {name} is {c_size} bytes in C but {size} in Python"
                + (" (not listed in nk_abi.c)" if c_size < 0 else ""))


@cache
def load() -> tuple[Any, Any]:
    """(ffi, lib) — loaded and checked once per process."""
    ffi = _generated().ffi
    path = library_path()
    try:
        lib = ffi.dlopen(str(path))
    except OSError as e:
        raise LibraryError(f"cannot load {path}: {e}") from e
    abi_check(ffi, lib, str(path))
    return ffi, lib


def check(status: int, what: str) -> None:
    """Turns a kernel status code into the matching KernelError subclass naming the call."""
    if status != 0:
        raise kernel_error(status, what, ffi_string(load()[1].nk_status_str(status)))


def ffi_string(cdata: Any) -> str:
    ffi, _ = load()
    return str(ffi.string(cdata).decode())


def buf_in(ctype: str, arr: Any) -> Any:
    """A C pointer of type ``ctype`` to a buffer the kernel only reads (no copy)."""
    ffi, _ = load()
    return ffi.cast(ctype, ffi.from_buffer(arr))


def buf_out(ctype: str, arr: Any) -> Any:
    """A C pointer to a buffer the kernel writes: refused unless the buffer is writable."""
    ffi, _ = load()
    if isinstance(arr, np.ndarray) and not arr.flags.writeable:
        raise ReadOnlyBuffer(f"output buffer ({arr.dtype}{list(arr.shape)}) is read-only")
    try:
        return ffi.cast(ctype, ffi.from_buffer(arr, require_writable=True))
    except TypeError as e:
        raise ReadOnlyBuffer(f"output buffer is not writable: {e}") from e


def new_state(status: int, out: Any, free: Any, what: str) -> Any:
    """The state an ``nk_*_new(..., &out)`` call made, freed with ``free`` when collected."""
    ffi, _ = load()
    check(status, what)
    if out[0] == ffi.NULL:
        raise KernelError(f"{what}: returned no state", call=what)
    return ffi.gc(out[0], free)


def require(cond: bool, message: str) -> None:
    """Raises InvalidInput(message) unless cond."""
    if not cond:
        raise InvalidInput(message)
