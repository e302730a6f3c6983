"""atheris: the templates file reader (hub.dsp.sorting.TemplateSet.load) on a valid version 2
file (σ per channel included) with bytes flipped, inserted, cut or appended, and on a version 1
file. Invariants: never raises past TemplateError, and whatever loads passes validate() (noise
empty or one finite σ > 0 per channel).

    python tests/fuzz/fuzz_templates.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import io
import logging
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from hub.dsp.sorting import TemplateError, TemplateSet
    from tests.fuzz.mutate import damage

logging.disable(logging.WARNING)
TMP = Path(tempfile.mkdtemp(prefix="fuzz_templates_"))
_rng = np.random.default_rng(0)
_ts = TemplateSet(30000.0, 4, 8, np.arange(3, dtype=np.int32),
                  _rng.normal(0, 1, (3, 4, 12)).astype(np.float32) - 5,
                  np.zeros((0, 12), np.float32), np.full(3, 50, np.int32), "gt",
                  np.array([3.0, 4.0, 5.0, 6.0], np.float32))
_ts.save(TMP / "v2.npz")
_z = dict(np.load(TMP / "v2.npz"))
_z["version"] = np.int32(1)
del _z["noise"]
_b = io.BytesIO()
np.savez(_b, **_z)
BASES = [(TMP / "v2.npz").read_bytes(), _b.getvalue()]
FILE = TMP / "t.npz"


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    FILE.write_bytes(damage(fdp, BASES[fdp.ConsumeIntInRange(0, 1)]))
    try:
        ts = TemplateSet.load(FILE)
    except TemplateError:
        return
    ts.validate()
    assert ts.noise.size in (0, ts.n_channels)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
