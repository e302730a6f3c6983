"""Loads the nk kernels library through cffi (ABI mode) from our own header declarations.

Each public header in ``c_kernels/include`` carries its Python-visible declarations between the
lines ``/* cffi-begin */`` and ``/* cffi-end */`` (plain C: no macros but integer ``#define``s).
The loader reads those sections in include order, so the bundle stays arch-neutral apart from
the ``.so``. Lookup order: ``$NK_LIB`` (path to a .so), then ``hub/kernels/_native`` (what
``make kernels`` installs, one ``libnk_<machine>.so`` per architecture), then ``build/native``.
"""

from __future__ import annotations

import os
import platform
import re
from functools import cache
from pathlib import Path
from typing import Any

from cffi import FFI

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent.parent
_BEGIN, _END = "/* cffi-begin */", "/* cffi-end */"
_INCLUDE_RE = re.compile(r'^#include "(nk_\w+\.h)"', re.MULTILINE)


class KernelError(RuntimeError):
    """A kernel call returned an error status, or the library is missing."""


def _include_dir() -> Path:
    for d in (_HERE / "_native" / "include", _REPO / "c_kernels" / "include"):
        if d.is_dir():
            return d
    raise KernelError("nk headers not found: run `make kernels`")


def _ordered_headers(include: Path) -> list[Path]:
    """Headers in dependency order (each after the nk_ headers it includes)."""
    headers = {p.name: p for p in sorted(include.glob("nk_*.h"))}
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name not in headers:
            return
        if name in stack:
            raise KernelError(f"include cycle through {name}")
        for dep in _INCLUDE_RE.findall(headers[name].read_text()):
            visit(dep, (*stack, name))
        done.append(name)

    for name in headers:
        visit(name, ())
    return [headers[n] for n in done]


def cdef_source(include: Path | None = None) -> str:
    """The concatenated cffi sections of every public header."""
    parts = []
    for h in _ordered_headers(include or _include_dir()):
        text = h.read_text()
        if _BEGIN not in text:
            continue
        start = text.index(_BEGIN) + len(_BEGIN)
        end = text.index(_END, start)
        parts.append(f"/* {h.name} */\n{text[start:end]}")
    return "\n".join(parts)


def _library_path() -> Path:
    env = os.environ.get("NK_LIB")
    if env:
        return Path(env)
    machine = platform.machine()
    for p in (_HERE / "_native" / f"libnk_{machine}.so", _REPO / "build" / "native" / "libnk.so"):
        if p.exists():
            return p
    raise KernelError(f"libnk for {machine} not found: run `make kernels` (or set NK_LIB)")


@cache
def load() -> tuple[FFI, Any]:
    """(ffi, lib) — loaded once per process."""
    ffi = FFI()
    ffi.cdef(cdef_source())
    lib = ffi.dlopen(str(_library_path()))
    return ffi, lib


def check(status: int, what: str) -> None:
    """Turns a kernel status code into a KernelError naming the call."""
    if status != 0:
        _, lib = load()
        text = ffi_string(lib.nk_status_str(status))
        raise KernelError(f"{what}: {text} (status {status})")


def ffi_string(cdata: Any) -> str:
    ffi, _ = load()
    return str(ffi.string(cdata).decode())
