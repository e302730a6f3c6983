"""atheris: the implant-link parser and block assembler. Invariants: never raises on any
bytes; valid frames after arbitrary garbage are still found (the stream goes on, at the latest
when the connection closes); corrupt frames are counted; every byte is accounted once; block
indices stay consecutive between gaps, and a gap starts where the samples stopped.

    python tests/fuzz/fuzz_implant_link.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    import numpy as np

    from hub.link import BlockAssembler, FrameParser, Gap, encode_frame
    from hub.link.blocks import Block, StreamStart

GOOD = [encode_frame(1000 + i, np.full((4, 3), i, np.int16), 20000) for i in range(3)]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    junk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    flip = fdp.ConsumeBool()
    tail = fdp.ConsumeBytes(fdp.remaining_bytes())
    damaged = bytearray(GOOD[1])
    if flip:
        damaged[20] ^= 0x5A
    stream = junk + GOOD[0] + bytes(damaged) + tail + GOOD[2]
    p = FrameParser()
    frames = []
    step = 1 + len(junk) % 97
    for i in range(0, len(stream), step):
        frames += p.feed(stream[i:i + step])
    frames += p.close()
    st = p.stats
    assert st.bytes == st.frame_bytes + st.garbage_bytes + st.corrupt + p.buffered
    counters = [f.counter for f in frames]
    assert 1002 in counters, "the stream must go on after garbage"
    if flip:
        assert p.stats.corrupt >= 1
    asm = BlockAssembler(block_samples=5)
    nxt = None
    for item in [it for f in frames for it in asm.push(f)] + asm.flush():
        if isinstance(item, Block):
            if nxt is not None:
                assert item.first_sample == nxt, (item.first_sample, nxt)
            nxt = item.first_sample + item.samples.shape[0]
        elif isinstance(item, Gap):
            assert nxt is None or item.start == nxt, (item, nxt)
            nxt = item.end
        elif isinstance(item, StreamStart):
            nxt = item.first_sample


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
