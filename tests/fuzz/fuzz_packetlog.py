"""atheris: the packet-log reader on a valid log with bytes flipped, inserted, cut or appended.
Invariants: never raises past PacketLogError (header damage only), every record it yields has a
valid kind and a payload that was written, and intact records after the damage are recovered.

    python tests/fuzz/fuzz_packetlog.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from host_tools.packetlog import Kind, PacketLogError, PacketLogReader, PacketLogWriter
    from tests.fuzz.mutate import damage

logging.disable(logging.WARNING)
TMP = Path(tempfile.mkdtemp(prefix="fuzz_packetlog_"))
LOG = TMP / "p.log"
CHUNKS = [bytes([i]) * (7 + 13 * i) for i in range(12)]
with PacketLogWriter(TMP / "base.log") as _w:
    for _i, _c in enumerate(CHUNKS):
        _w.chunk(_c, t_ns=_i)
BASE = (TMP / "base.log").read_bytes()


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    LOG.write_bytes(damage(fdp, BASE))
    try:
        r = PacketLogReader(LOG)
    except PacketLogError:
        return
    for rec in r:
        assert isinstance(rec.kind, Kind)
        if rec.kind == Kind.CHUNK:
            assert rec.payload in CHUNKS


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
