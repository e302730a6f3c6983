"""atheris: recording readers (WAV header, raw + JSON sidecar) on arbitrary bytes.

Any outcome but a parsed recording or RecordingError is a bug. Run by `make fuzz-ci`:
    python tests/fuzz/fuzz_sources.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import wave  # noqa: F401  (stdlib parser under test too)

    from hub.sources import RecordingError, open_recording, raw, si_folder  # noqa: F401
    from hub.sources import wav as wav_reader  # noqa: F401

TMP = Path(tempfile.mkdtemp(prefix="fuzz_sources_"))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 1)
    if kind == 0:
        path = TMP / "x.wav"
        path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        meta = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))
        (TMP / "x.json").write_text(meta)
        path = TMP / "x.bin"
        path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        rec = open_recording(path)
        rec.read(0, min(rec.num_samples, 64))
    except RecordingError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
