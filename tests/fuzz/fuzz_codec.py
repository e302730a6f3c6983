"""atheris: the Python-facing codec decode paths (hub.kernels.codec and the hubctl container).
Invariant: any bytes give decoded output or a KernelError/ValueError, never anything else.
Half the inputs are raw bytes; half are valid streams with a few fuzzed bytes flipped.

    python tests/fuzz/fuzz_codec.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    import numpy as np

    from host_tools.codec_cli import decode_wav, encode_wav
    from hub.kernels import codec
    from hub.kernels._ffi import KernelError

_X = np.cumsum(np.random.default_rng(0).integers(-3, 4, (4000, 2)), axis=0).astype(np.int16) * 64
_ENC = codec.Encoder(2, resync_interval=1000, levels=codec.fit_ladder(_X))
_HEADER = _ENC.header
_PACKETS = [_ENC.encode(_X[i:i + 500]) for i in range(0, 4000, 500)]
_WAV = (b"RIFF" + struct.pack("<I", 36 + _X.nbytes) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, 19531, 19531 * 4, 4, 16) + b"data"
        + struct.pack("<I", _X.nbytes) + _X.astype("<i2").tobytes())
_CONTAINER = encode_wav(_WAV, block=1000)


def _flip(fdp: atheris.FuzzedDataProvider, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if b:
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
    return bytes(b)


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 4)
    try:
        if mode == 0:
            codec.Decoder(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)))
        elif mode == 1:
            dec = codec.Decoder(_HEADER)
            for p in _PACKETS:
                y, info = dec.decode(_flip(fdp, p))
                assert y is None or y.shape == (info.n_samples, 2)
        elif mode == 2:
            codec.decode_events(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)))
        elif mode == 3:
            decode_wav(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000)))
        else:   # a whole container, damaged and/or cut: refused, or restored exactly
            blob = _flip(fdp, _CONTAINER)[:fdp.ConsumeIntInRange(0, len(_CONTAINER))]
            out = decode_wav(blob, max_output=1 << 20)
            assert out == _WAV, "a container that decodes must restore the file exactly"
    except (KernelError, ValueError):
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
