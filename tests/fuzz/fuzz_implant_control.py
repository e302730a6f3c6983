"""atheris: the implant firmware's control-message parser (hil/implant_fw/control.py, run here
under CPython because atheris is a CPython tool; the firmware runs the same file). Invariants:
never raises on any bytes, a valid message after arbitrary junk is still found, every parsed
message has a valid type and the payload its length byte says, the buffer stays bounded.

    python tests/fuzz/fuzz_implant_control.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hil" / "implant_fw"))

with atheris.instrument_imports():
    import control  # type: ignore[import-not-found]

    from hil.implant_ctl import encode_velocity

GOOD = encode_velocity(123, -456, 789)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    step = fdp.ConsumeIntInRange(1, 64)
    junk = fdp.ConsumeBytes(fdp.remaining_bytes())
    stream = junk + GOOD
    p = control.ControlParser()
    out = []
    for i in range(0, len(stream), step):
        out += p.feed(stream[i:i + step])
        assert len(p.buf) <= 4 + control.MAX_PAYLOAD + 4 + step
    for typ, payload in out:
        assert control.VELOCITY <= typ <= control.STOP and len(payload) <= control.MAX_PAYLOAD
    assert out and out[-1] == (control.VELOCITY, GOOD[4:-4]), "the valid message was lost"


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
