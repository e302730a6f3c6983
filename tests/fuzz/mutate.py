"""The byte damage the file fuzzers apply to a valid file: up to 4 flips, insertions, cuts or
appended bytes, drawn from the fuzzer's input (tests/fuzz/fuzz_packetlog.py,
fuzz_templates.py)."""

from __future__ import annotations

import atheris


def damage(fdp: atheris.FuzzedDataProvider, base: bytes) -> bytes:
    buf = bytearray(base)
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        op = fdp.ConsumeIntInRange(0, 3)
        at = fdp.ConsumeIntInRange(0, len(buf))
        if op == 0 and at < len(buf):
            buf[at] ^= fdp.ConsumeIntInRange(1, 255)
        elif op == 1:
            buf[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
        elif op == 2:
            del buf[at:]
        else:
            buf += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60))
    return bytes(buf)
