"""Build step: compiles the nk headers' cffi sections into a pure-Python module (cffi
out-of-line ABI mode), so nothing is parsed when the hub starts and the module is the same on
every architecture (only ``libnk_<machine>.so`` differs).

``python -m hub.kernels._build INCLUDE_DIR OUT.py`` — run by ``make kernels``. Each public
header carries its Python-visible declarations between ``/* cffi-begin */`` and
``/* cffi-end */`` (plain C: no macros but integer ``#define``s); sections are taken in include
order. The module also records the SHA-256 of that text, so a source tree whose headers changed
since the last build is caught at import (:mod:`hub.kernels._ffi`).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

BEGIN, END = "/* cffi-begin */", "/* cffi-end */"
_INCLUDE_RE = re.compile(r'^#include "(nk_\w+\.h)"', re.MULTILINE)


def ordered_headers(include: Path) -> list[Path]:
    """Public headers in dependency order (each after the nk_ headers it includes)."""
    headers = {p.name: p for p in sorted(include.glob("nk_*.h"))}
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name not in headers:
            return
        if name in stack:
            raise ValueError(f"include cycle through {name}")
        for dep in _INCLUDE_RE.findall(headers[name].read_text()):
            visit(dep, (*stack, name))
        done.append(name)

    for name in headers:
        visit(name, ())
    return [headers[n] for n in done]


def cdef_source(include: Path) -> str:
    """The concatenated cffi sections of every public header."""
    parts = []
    for h in ordered_headers(include):
        text = h.read_text()
        if BEGIN not in text:
            continue
        start = text.index(BEGIN) + len(BEGIN)
        parts.append(f"/* {h.name} */\n{text[start:text.index(END, start)]}")
    return "\n".join(parts)


def cdef_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def build(include: Path, out: Path) -> None:
    """Writes the out-of-line ABI module ``out`` (module name = its stem)."""
    from cffi import FFI

    source = cdef_source(include)
    ffibuilder = FFI()
    ffibuilder.cdef(source)
    ffibuilder.set_source(out.stem, None)          # None: ABI mode, no C compiler involved
    tmp = out.with_name(f".{out.name}.tmp")
    ffibuilder.emit_python_code(str(tmp))
    with tmp.open("a") as f:
        f.write(f"\nCDEF_SHA256 = {cdef_digest(source)!r}\n")
    tmp.replace(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m hub.kernels._build INCLUDE_DIR OUT.py")
    build(Path(sys.argv[1]), Path(sys.argv[2]))
