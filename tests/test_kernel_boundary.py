"""The C boundary (issue 9 item 3): writable outputs, status-typed errors, the ABI check at
load, hidden internal symbols, and declarations compiled at build time (nothing parsed at
import)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.errors import (
    NK_ERR_ARG,
    NK_ERR_CORRUPT,
    HubError,
    InvalidInput,
    KernelArgumentError,
    KernelCorruptInput,
    LibraryError,
    ReadOnlyBuffer,
)
from hub.kernels import Detector, DetectorConfig, Reference
from hub.kernels._ffi import abi_check, library_path, load
from hub.kernels.codec import Decoder, Encoder

REPO = Path(__file__).resolve().parent.parent


def test_reference_refuses_a_read_only_view_and_leaves_the_bytes_alone() -> None:
    """Reproduction: Reference.process on np.frombuffer(bytes) rewrote an immutable bytes."""
    raw = np.arange(40, dtype=np.float32).tobytes()
    before = bytes(raw)
    view = np.frombuffer(raw, dtype=np.float32).reshape(10, 4)
    ref = Reference(np.zeros(4, dtype=np.int32), "median")
    with pytest.raises(ReadOnlyBuffer, match="read-only"):
        ref.process(view)
    assert raw == before
    assert issubclass(ReadOnlyBuffer, ValueError) and issubclass(ReadOnlyBuffer, HubError)
    ok = view.copy()
    assert ref.process(ok) is ok          # a writable array is still processed in place


def test_kernel_argument_errors_carry_the_status_and_are_value_errors() -> None:
    """Reproduction: NK_ERR_ARG became a bare KernelError (no code; INTERNAL at the host)."""
    with pytest.raises(KernelArgumentError) as e:
        Detector(4, DetectorConfig(eta_fast=0.9))    # the C side refuses eta_fast ≥ 0.5
    assert e.value.status == NK_ERR_ARG and e.value.call.startswith("nk_detect_new")
    assert isinstance(e.value, ValueError) and isinstance(e.value, HubError)
    det = Detector(4, DetectorConfig())
    with pytest.raises(ValueError) as e2:
        det.set_threshold(-1.0)
    assert getattr(e2.value, "status", None) == NK_ERR_ARG


def test_corrupt_stream_header_is_bad_input_with_its_status() -> None:
    with pytest.raises(KernelCorruptInput) as e:
        Decoder(b"NKC\x01" + bytes(40))
    assert e.value.status == NK_ERR_CORRUPT and isinstance(e.value, ValueError)


def test_shape_errors_are_invalid_input() -> None:
    ref = Reference(np.zeros(4, dtype=np.int32), "median")
    with pytest.raises(InvalidInput, match="shape"):
        ref.process(np.zeros((3, 5), np.float32))


def test_codec_writes_only_into_writable_buffers() -> None:
    enc = Encoder(2)
    pkt = enc.encode(np.zeros((8, 2), np.int16))
    dec = Decoder(enc.header)
    frozen = np.zeros((8, 2), np.int16)
    frozen.flags.writeable = False
    with pytest.raises(ReadOnlyBuffer):
        dec.decode(pkt, out=frozen)


class _Lib:
    """A library whose version and struct sizes the test chooses (the check's inputs)."""

    def __init__(self, real: Any, version: int, sizes: dict[str, int]) -> None:
        self._real, self.NK_VERSION = real, real.NK_VERSION
        self._version, self._sizes = version, sizes

    def nk_version(self) -> int:
        return self._version

    def nk_sizeof(self, name: bytes) -> int:
        return self._sizes.get(name.decode(), int(self._real.nk_sizeof(name)))

    def __dir__(self) -> list[str]:
        return ["nk_version", "nk_sizeof"]


def test_abi_check_refuses_another_version_or_struct_layout() -> None:
    ffi, lib = load()
    abi_check(ffi, lib)                                    # the real pair passes
    with pytest.raises(LibraryError, match="version"):
        abi_check(ffi, _Lib(lib, int(lib.NK_VERSION) + 1, {}))
    with pytest.raises(LibraryError, match="nk_event is 20 bytes in C"):
        abi_check(ffi, _Lib(lib, int(lib.NK_VERSION), {"nk_event": 20}))
    with pytest.raises(LibraryError, match=r"not listed in nk_abi\.c"):
        abi_check(ffi, _Lib(lib, int(lib.NK_VERSION), {"nk_sort_stats": -1}))


def test_only_the_declared_api_is_exported() -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(library_path())], check=True,
                         capture_output=True, text=True).stdout
    exported = {ln.split()[-1] for ln in out.splitlines() if ln.split()[-1].startswith("nk_")}
    exported = {s for s in exported if not s.endswith(".resolver")}   # ifunc resolvers
    _, lib = load()
    declared = {n for n in dir(lib) if n.startswith("nk_")}
    assert exported == declared
    assert "nk_crc32" not in exported and "nk_res_init" not in exported   # internal helpers


def test_import_parses_no_declarations() -> None:
    """The cdef was compiled at build time: importing the kernels never calls FFI.cdef."""
    code = ("import cffi\n"
            "def refuse(*a, **k): raise SystemExit('cdef parsed at import')\n"
            "cffi.FFI.cdef = refuse\n"
            "import hub.kernels, hub.kernels.codec, hub.kernels.sorter\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
