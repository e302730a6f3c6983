"""``hubctl codec encode IN.wav OUT`` / ``hubctl codec decode IN OUT.wav``: the nk_codec on a
WAV file, round-tripping to a byte-identical WAV. The container (``.nkc``, version 2: totals,
trailer, CRC-32 of the restored file and of the container) is :mod:`host_tools.codec_container`.

Both directions stream with bounded memory: the encoder maps its input (the level ladder is
fitted over the whole file, the per-file code table of a scaled ADC), the decoder holds one
packet at a time and writes ``OUT.partial``, renamed to ``OUT`` only once every check passed —
a damaged or truncated container leaves no output and exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
from pathlib import Path

from host_tools.codec_container import (
    MAX_OUTPUT_BYTES,
    ContainerError,
    decode,
    decode_wav,
    encode,
    encode_wav,
)
from hub.kernels import codec

__all__ = ["ContainerError", "decode_wav", "encode_wav"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("encode", help="WAV → compressed container")
    e.add_argument("input", type=Path)
    e.add_argument("output", type=Path)
    e.add_argument("--block", type=int, default=codec.DEFAULT_RESYNC,
                   help="samples per packet (default %(default)s)")
    e.add_argument("--resync", type=int, default=codec.DEFAULT_RESYNC,
                   help="samples between resync points, 0 = none (default %(default)s)")
    d = sub.add_parser("decode", help="compressed container → the original WAV")
    d.add_argument("input", type=Path)
    d.add_argument("output", type=Path)
    d.add_argument("--max-output-mb", type=float, default=MAX_OUTPUT_BYTES / 1e6,
                   help="refuse to restore more than this (default: the WAV limit, 4295 MB)")


def _write_atomically(path: Path, action: object) -> int:
    """Runs ``action(file)`` on ``path.partial`` and renames it to ``path`` on success."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("wb") as f:
            n = int(action(f))  # type: ignore[operator]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def run(args: argparse.Namespace) -> int:
    size_in = args.input.stat().st_size
    if args.action == "encode":
        if not 1 <= args.block <= 65535 or args.resync < 0:
            raise ValueError("--block must be in 1..65535 and --resync ≥ 0")
        with args.input.open("rb") as f, contextlib.ExitStack() as stack:
            view: object = b""
            if size_in:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                stack.callback(mm.close)
                view = memoryview(mm)
                stack.callback(view.release)  # type: ignore[attr-defined]
            n = _write_atomically(args.output, lambda out: encode(
                view, out, block=args.block, resync_interval=args.resync))
    else:
        if not args.max_output_mb > 0:
            raise ValueError("--max-output-mb must be > 0")
        limit = int(args.max_output_mb * 1e6)
        with args.input.open("rb") as f:
            n = _write_atomically(args.output,
                                  lambda out: decode(f, out, max_output=limit).bytes_out)
    print(f"{args.input} ({size_in} bytes) → {args.output} ({n} bytes)")
    return 0
