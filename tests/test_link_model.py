"""The implant link under any byte stream, against an exact model (hypothesis).

A broken or hostile implant sends frames in any order: duplicates, counters a little behind or
far away, counter wrap, junk before and after lock, damaged frames, frames of other formats
(strays and real changes, including frames more than 4× bigger than the locked size), and the
connection may be cut anywhere. The model says, from what was *sent*:

- parser: exactly which frames are delivered, how many corrupt events and garbage bytes, and
  that every byte is accounted once (frames + garbage + corrupt + buffered = bytes fed),
  however the stream is split into reads;
- assembler: exactly which rows come out at which sample indices, which gaps (exact ranges and
  kinds), which stream starts, and the count of every frame it could not place — nothing
  invented, nothing lost without a count.

To make the parser's counts exact the generator keeps the byte 0xA5 out of everything except
the sync markers (payloads are nudged until the encoded frame has no other 0xA5); junk bytes
never contain it either. The parser's handling of arbitrary bytes (sync markers inside junk)
is covered by tests/test_link.py and the atheris target.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.link import BlockAssembler, FrameParser, Gap, encode_frame
from hub.link.blocks import COUNTER_MOD, Block, StreamStart
from hub.link.frame import HEADER, HEADER_SIZE, MAX_CHANNELS, MAX_RATE_HZ, MAX_SAMPLES, UNLOCK_AFTER

#: (channels, rate, samples per frame); the last is > 4× the size of the others
FORMATS = [(2, 30000, 3), (3, 30000, 3), (2, 20000, 3), (2, 30000, 5), (16, 30000, 16)]
STALE, MAX_GAP_S, CONFIRM = 4, 0.01, 2          # the assembler's settings under test


def clean_counter(counter: int) -> int:
    """The next counter (mod 2³²) whose bytes hold no 0xA5."""
    counter %= COUNTER_MOD
    while 0xA5 in counter.to_bytes(4, "little"):
        counter = (counter + 1) % COUNTER_MOD
    return counter


def clean_frame(counter: int, fmt: int, seed: int) -> bytes:
    """A valid frame with no 0xA5 byte after its sync marker."""
    c, rate, n = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    for _ in range(2000):
        x = rng.integers(-300, 300, (n, c)).astype(np.int16)
        x[x % 256 == 0xA5] += 1
        b = encode_frame(counter, x, rate)
        if 0xA5 not in b[1:]:
            return b
    raise AssertionError("no clean frame found")


# ------------------------------------------------------------------ what the implant sends
@dataclass
class Piece:
    kind: str                    # "frame" | "damaged" | "junk"
    data: bytes


@st.composite
def transmissions(draw: st.DrawFn) -> tuple[list[Piece], int]:
    """(pieces in send order, how many bytes the connection delivers)."""
    pieces: list[Piece] = []
    fmt = draw(st.sampled_from(range(4)))
    counter = draw(st.sampled_from([0, 1000, COUNTER_MOD - 3])) - 1
    for _ in range(draw(st.integers(1, 40))):
        op = draw(st.sampled_from(["next"] * 6 + ["skip", "dup", "back", "far", "stray",
                                                   "switch", "junk", "damaged"]))
        if op == "junk":
            junk = draw(st.binary(min_size=1, max_size=40))
            pieces.append(Piece("junk", junk.replace(b"\xa5", b"\x00")))
            continue
        if op == "skip":
            counter += draw(st.integers(1, 120))
        elif op == "back":
            counter -= draw(st.integers(1, 2 * STALE))
        elif op == "far":
            counter = draw(st.integers(0, COUNTER_MOD - 1))
        elif op == "next":
            counter += 1
        f = fmt
        if op == "stray":
            f = draw(st.sampled_from(range(len(FORMATS))))
        elif op == "switch":
            fmt = f = draw(st.sampled_from(range(len(FORMATS))))
            counter = draw(st.sampled_from([0, counter + 1]))
        counter = clean_counter(counter)
        frame = clean_frame(counter, f, draw(st.integers(0, 3)))
        if op == "damaged":
            i = draw(st.integers(2, len(frame) - 1))
            x = draw(st.integers(1, 255))
            b = bytearray(frame)
            b[i] ^= x
            if b[i] == 0xA5:
                b[i] ^= 0x01
            pieces.append(Piece("damaged", bytes(b)))
        else:
            pieces.append(Piece("frame", frame))
    total = sum(len(p.data) for p in pieces)
    cut = draw(st.one_of(st.just(total), st.integers(0, total)))
    return pieces, cut


# ------------------------------------------------------------------ parser model
@dataclass
class ParserExpect:
    frames: list[bytes] = field(default_factory=list)
    corrupt: int = 0
    garbage: int = 0
    frame_bytes: int = 0


def parser_model(pieces: list[Piece], cut: int) -> ParserExpect:
    """What the parser must deliver and count for the first ``cut`` bytes, then close."""
    exp = ParserExpect()
    locked = 0
    over: tuple[bytes, int] = (b"", 0)
    pos = 0
    for p in pieces:
        data = p.data[:max(0, cut - pos)]
        pos += len(p.data)
        if not data:
            break
        if p.kind == "junk":
            exp.garbage += len(data)
            continue
        if len(data) < 2:                     # a lone 0xA5: no marker, garbage
            exp.garbage += len(data)
            continue
        whole = p.kind == "frame" and len(data) == len(p.data)
        if len(data) >= HEADER_SIZE:
            _, ver, _, _, c, n, rate = HEADER.unpack_from(data)
            valid = ver == 1 and 1 <= c <= MAX_CHANNELS and 1 <= n <= MAX_SAMPLES \
                and 1 <= rate <= MAX_RATE_HZ
            size = HEADER_SIZE + 2 * c * n + 4
            if valid and locked and size > 4 * locked:
                key = data[2:4] + data[8:HEADER_SIZE]
                k = over[1] + 1 if key == over[0] else 1
                if k >= UNLOCK_AFTER:
                    locked, over = 0, (b"", 0)
                else:
                    over = (key, k)
                    valid = False
            if valid and whole:
                exp.frames.append(data)
                exp.frame_bytes += len(data)
                locked, over = len(data), (b"", 0)
                continue
        exp.corrupt += 1                      # one byte: where the false frame started
        exp.garbage += len(data) - 1
    return exp


# ------------------------------------------------------------------ assembler model
@dataclass
class AsmExpect:
    items: list[tuple[object, ...]] = field(default_factory=list)   # starts and gaps
    rows: dict[int, bytes] = field(default_factory=dict)            # sample index → row
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("duplicates", "stale", "foreign", "discontinuities", "format_changes",
         "missing_frames", "accepted"), 0))


def assembler_model(frames: list[bytes]) -> AsmExpect:
    exp = AsmExpect()
    fmt: tuple[int, int, int] | None = None
    last = nxt = 0
    cands: list[tuple[int, tuple[int, int, int], np.ndarray]] = []

    def parse(b: bytes) -> tuple[int, tuple[int, int, int], np.ndarray]:
        _, _, _, ctr, c, n, rate = HEADER.unpack_from(b)
        x = np.frombuffer(b[HEADER_SIZE:-4], "<i2").reshape(n, c)
        return ctr, (c, rate, n), x

    def add(x: np.ndarray) -> None:
        nonlocal nxt
        for row in x:
            exp.rows[nxt] = row.tobytes()
            nxt += 1

    def start(ctr: int, f: tuple[int, int, int], x: np.ndarray, change: bool) -> None:
        nonlocal fmt, last, nxt
        if change:
            exp.items.append(("gap", nxt, nxt, 0, "format"))
        else:
            nxt = ctr * f[2]
        exp.items.append(("start", nxt, f, change))
        fmt, last = f, ctr
        exp.counts["accepted"] += 1
        add(x)

    def place(ctr: int, x: np.ndarray) -> None:
        nonlocal last, nxt
        assert fmt is not None
        d = (ctr - last) % COUNTER_MOD
        max_gap = max(1, int(MAX_GAP_S * fmt[1] / fmt[2]))
        if d == 0:
            exp.counts["duplicates"] += 1
            return
        if COUNTER_MOD - d <= STALE:
            exp.counts["stale"] += 1
            return
        if d > max_gap + 1:
            exp.counts["discontinuities"] += 1
            exp.items.append(("gap", nxt, nxt, 0, "discontinuity"))
        elif d > 1:
            exp.counts["missing_frames"] += d - 1
            exp.items.append(("gap", nxt, nxt + (d - 1) * fmt[2], d - 1, "missing"))
            nxt += (d - 1) * fmt[2]
        last = ctr
        exp.counts["accepted"] += 1
        add(x)

    for b in frames:
        ctr, f, x = parse(b)
        if fmt is None:
            start(ctr, f, x, False)
        elif f != fmt:
            if cands and cands[0][1] != f:
                exp.counts["foreign"] += len(cands)
                cands = []
            cands.append((ctr, f, x))
            if len(cands) >= CONFIRM:
                exp.counts["format_changes"] += 1
                first, rest, cands = cands[0], cands[1:], []
                start(*first, True)
                for c2, _, x2 in rest:
                    place(c2, x2)
        else:
            exp.counts["foreign"] += len(cands)
            cands = []
            place(ctr, x)
    exp.counts["foreign"] += len(cands)
    return exp


# ------------------------------------------------------------------ the properties
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transmissions(), st.lists(st.integers(1, 97), min_size=1, max_size=8),
       st.integers(1, 23))
def test_link_delivers_counts_and_reports_exactly_what_the_model_says(
        tx: tuple[list[Piece], int], splits: list[int], block: int) -> None:
    pieces, cut = tx
    stream = b"".join(p.data for p in pieces)[:cut]
    parser = FrameParser()
    got, pos, k = [], 0, 0
    while pos < len(stream):                  # any split of the stream into reads
        step = splits[k % len(splits)]
        got += parser.feed(stream[pos:pos + step])
        pos, k = pos + step, k + 1
        s = parser.stats
        assert s.bytes == s.frame_bytes + s.garbage_bytes + s.corrupt + parser.buffered
    got += parser.close()

    pexp = parser_model(pieces, cut)
    s = parser.stats
    assert [encode_frame(f.counter, f.samples, f.sampling_rate) for f in got] == pexp.frames
    assert (s.frames, s.corrupt, s.garbage_bytes, s.frame_bytes, parser.buffered) == (
        len(pexp.frames), pexp.corrupt, pexp.garbage, pexp.frame_bytes, 0)
    assert s.bytes == len(stream)

    asm = BlockAssembler(block, confirm_frames=CONFIRM, stale_frames=STALE, max_gap_s=MAX_GAP_S)
    items = [it for f in got for it in asm.push(f)] + asm.flush()
    aexp = assembler_model(pexp.frames)
    control: list[tuple[object, ...]] = []
    rows: dict[int, bytes] = {}
    nxt: int | None = None
    resume_due = False
    for it in items:
        if isinstance(it, StreamStart):
            control.append(("start", it.first_sample,
                            (it.n_channels, it.sampling_rate, it.frame_samples), it.change))
            nxt, resume_due = it.first_sample, False
        elif isinstance(it, Gap):
            control.append(("gap", it.start, it.end, it.frames, it.kind))
            assert nxt == it.start                # a gap starts where the samples stopped
            nxt, resume_due = it.end, it.kind != "format"
        else:
            assert isinstance(it, Block)
            assert it.first_sample == nxt and 1 <= it.samples.shape[0] <= max(block, 1)
            assert it.resume == resume_due        # the pipeline is told, once
            resume_due = False
            for i, row in enumerate(it.samples):
                assert it.first_sample + i not in rows
                rows[it.first_sample + i] = row.tobytes()
            nxt = it.first_sample + it.samples.shape[0]
    assert control == aexp.items
    assert rows == aexp.rows                      # every sample exactly once, none invented
    st_ = asm.stats
    assert {k: getattr(st_, k if k != "missing_frames" else "missing_frames")
            for k in aexp.counts} == aexp.counts
    # every frame delivered by the parser is placed or counted
    assert st_.accepted + st_.duplicates + st_.stale + st_.foreign == len(got)


def test_model_sanity_format_switch_to_bigger_frames_unlocks() -> None:
    """The oversize guard: an implant that really switches to frames > 4× bigger loses
    UNLOCK_AFTER − 1 frames (counted corrupt), then the new stream is found."""
    small = [clean_frame(i, 0, 0) for i in range(3)]
    big = [clean_frame(i, 4, 0) for i in range(6)]
    p = FrameParser()
    got = p.feed(b"".join(small + big)) + p.close()
    assert [f.n_channels for f in got] == [2] * 3 + [16] * (6 - UNLOCK_AFTER + 1)
    assert p.stats.corrupt == UNLOCK_AFTER - 1
    assert struct.calcsize("<2sBBIHHI") == HEADER_SIZE
