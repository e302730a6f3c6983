"""The air's connection-event engine: packets delivered once, in order, credits returned only
for delivered packets, no more air time per event than the model allows, supervision timeout
on both sides."""

from __future__ import annotations

import asyncio

import pytest

from hil.radio_model import LinkModel, exchange_time_us
from tests.air_engine_harness import make_pair, run_events, settle


def test_in_order_once_and_budgeted() -> None:
    async def go() -> None:
        model = LinkModel(phy="2M", interval_ms=7.5, per=0.2, seed=3)
        p = make_pair(model)
        p.air.set_phy("2M")
        p.air.set_data_length(251)
        sent = [p.send(1, bytes([i % 256]) * (1 + (i * 37) % 247)) for i in range(60)]
        up = p.send(0, b"\x01" * 20)
        await settle()
        run_events(p, 200)
        await settle()
        assert p.central.acl == sent                  # peripheral → central, in order, once
        assert p.peripheral.acl == [up]
        assert p.peripheral.completed == 60 and p.central.completed == 1
        assert p.air.sides[1].retransmissions > 0     # PER 0.2 costs retransmissions

    asyncio.run(go())


def test_events_carry_at_most_the_budget() -> None:
    async def go() -> None:
        p = make_pair(LinkModel(phy="2M", interval_ms=7.5))
        p.air.set_phy("2M")
        p.air.set_data_length(251)
        for _ in range(20):
            p.send(1, b"\x00" * 247)
        await settle()
        run_events(p, 1)
        await settle()
        per_event = int(7500 // exchange_time_us(0, 251, "2M"))
        assert len(p.central.acl) == per_event == 5

    asyncio.run(go())


def test_supervision_timeout_both_sides() -> None:
    async def go() -> None:
        p = make_pair(LinkModel(interval_ms=10, supervision_timeout_s=0.5))
        p.link.outages.append((0.0, 100.0))
        p.air.last_heard = 0.0
        run_events(p, 60)                            # 0.6 s of silence
        await settle()
        assert p.central.disconnect_reasons == [0x08]
        assert p.peripheral.disconnect_reasons == [0x08]
        assert p.air.closed

    asyncio.run(go())


@pytest.mark.parametrize("octets", [27, 251])
def test_data_length_fragments(octets: int) -> None:
    async def go() -> None:
        p = make_pair(LinkModel(phy="1M", interval_ms=7.5, dle=octets == 251))
        p.air.set_data_length(octets)
        for _ in range(4):
            p.send(1, b"\x00" * 247)
        await settle()
        run_events(p, 1)
        await settle()
        assert len(p.central.acl) == (3 if octets == 251 else 1)

    asyncio.run(go())
