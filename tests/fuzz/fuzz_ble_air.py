"""atheris: the virtual air's connection-event engine under random link models and traffic.
Invariants: each side receives a prefix of what the other sent — in order, never duplicated —
credits (Number-Of-Completed-Packets) equal deliveries, and a supervision timeout reaches
both sides with reason 0x08.

    python tests/fuzz/fuzz_ble_air.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from hil.radio_model import LinkModel
    from tests.air_engine_harness import make_pair, settle

logging.disable(logging.WARNING)


async def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    model = LinkModel(phy="2M" if fdp.ConsumeBool() else "1M",
                      interval_ms=fdp.ConsumeIntInRange(6, 400) * 1.25,
                      dle=fdp.ConsumeBool(),
                      max_pdus_per_event=fdp.ConsumeIntInRange(0, 8),
                      per=fdp.ConsumeIntInRange(0, 90) / 100.0,
                      supervision_timeout_s=fdp.ConsumeIntInRange(1, 40) / 10.0,
                      seed=fdp.ConsumeIntInRange(0, 1000))
    p = make_pair(model)
    if fdp.ConsumeBool():
        p.air.set_phy(model.phy)
    if fdp.ConsumeBool():
        p.air.set_data_length(model.max_octets)
    sent: tuple[list[bytes], list[bytes]] = ([], [])
    t = 0.0
    interval = model.interval_ms / 1000.0
    for _ in range(fdp.ConsumeIntInRange(0, 60)):
        op = fdp.ConsumeIntInRange(0, 3)
        if op <= 1:
            side = op
            sent[side].append(p.send(side, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 247))))
        elif op == 2:
            p.link.outages.append((t, t + fdp.ConsumeIntInRange(0, 5000) / 1000.0))
        else:
            for _ in range(fdp.ConsumeIntInRange(1, 50)):
                if p.air.closed:
                    break
                p.air._event(t)
                t += interval
    await settle()
    got = (p.central.acl, p.peripheral.acl)        # central receives what the peripheral sent
    for side, rx in ((1, got[0]), (0, got[1])):
        assert rx == sent[side][:len(rx)], "reordered, duplicated or corrupted delivery"
    assert p.peripheral.completed == len(got[0]) and p.central.completed == len(got[1])
    if p.air.closed:
        assert p.central.disconnect_reasons == [0x08] == p.peripheral.disconnect_reasons
    else:
        assert not p.central.disconnect_reasons and not p.peripheral.disconnect_reasons


def test_one_input(data: bytes) -> None:
    asyncio.run(one(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
