"""The packet log: round trip, a truncated tail at any byte, damage in the middle, and a
SIGKILLed writer that loses at most its last flush interval."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.packetlog import (
    Kind,
    Link,
    PacketLogError,
    PacketLogReader,
    PacketLogWriter,
)

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, n: int = 50, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    chunks = [bytes(rng.getrandbits(8) for _ in range(rng.randint(7, 244))) for _ in range(n)]
    with PacketLogWriter(path, {"test": True}, link=Link.BLE) as w:
        w.event(Kind.CONNECT, {"address": "x"})
        for i, c in enumerate(chunks):
            w.chunk(c, t_ns=1000 + i)
        w.command(b"\x08\x01")
    return chunks


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    chunks = _write(p)
    r = PacketLogReader(p)
    assert r.meta["test"] is True and r.meta["link"] == "ble"
    recs = list(r)
    assert [x.kind for x in recs] == [Kind.CONNECT, *[Kind.CHUNK] * 50, Kind.COMMAND, Kind.END]
    assert [x.payload for x in recs if x.kind == Kind.CHUNK] == chunks
    assert [x.t_ns for x in recs if x.kind == Kind.CHUNK] == list(range(1000, 1050))
    assert all(x.link == Link.BLE for x in recs)
    assert r.stats.clean_end and r.stats.corrupt_records == 0
    assert r.stats.truncated_tail_bytes == 0


def test_truncated_tail_at_every_cut(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    chunks = _write(p, n=8)
    data = p.read_bytes()
    start = PacketLogReader(p).data_offset
    for cut in range(start, len(data)):
        q = tmp_path / "cut.log"
        q.write_bytes(data[:cut])
        r = PacketLogReader(q)
        got = [x.payload for x in r if x.kind == Kind.CHUNK]
        assert got == chunks[:len(got)]              # a prefix, never garbage
        assert r.stats.corrupt_records == 0
        assert not r.stats.clean_end


def test_damage_in_the_middle_costs_one_record(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    chunks = _write(p, n=30)
    r = PacketLogReader(p)
    recs = [x for x in r if x.kind == Kind.CHUNK]
    data = bytearray(p.read_bytes())
    victim = recs[10]
    data[victim.offset + 20] ^= 0xFF                  # inside its payload
    p.write_bytes(bytes(data))
    r = PacketLogReader(p)
    got = [x.payload for x in r if x.kind == Kind.CHUNK]
    assert got == chunks[:10] + chunks[11:]
    assert r.stats.corrupt_records == 1 and r.stats.clean_end


def test_not_a_log(tmp_path: Path) -> None:
    p = tmp_path / "x.log"
    p.write_bytes(b"\x05\x00hello, these are old-format chunks")
    with pytest.raises(PacketLogError, match="not a packet log"):
        PacketLogReader(p)
    p.write_bytes(b"IHUB")
    with pytest.raises(PacketLogError, match="too short"):
        PacketLogReader(p)


WRITER = """
import sys, time
from pathlib import Path
from host_tools.packetlog import PacketLogWriter
w = PacketLogWriter(Path(sys.argv[1]), flush_s=0.25)
i = 0
while True:
    t = time.monotonic_ns()
    w.chunk(i.to_bytes(8, "little") + t.to_bytes(8, "little"))
    print(i, t, flush=True)          # after the write: the test knows what was written
    i += 1
    time.sleep(0.002)
"""


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    p = tmp_path / "k.log"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p)], cwd=REPO,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    proc.stdout.readline()                            # writing
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    written = [tuple(map(int, line.split())) for line in proc.stdout.read().splitlines()]
    proc.wait(10)
    t_last = written[-1][1]
    r = PacketLogReader(p)
    seqs = [int.from_bytes(x.payload[:8], "little") for x in r if x.kind == Kind.CHUNK]
    assert seqs == list(range(len(seqs)))             # a gapless prefix
    # everything written more than a second before the writer's last write survived
    must = [i for i, t in written if t_last - t > 1_000_000_000]
    assert not must or seqs[-1] >= must[-1]
    assert r.stats.corrupt_records == 0
