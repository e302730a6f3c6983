"""``hubctl record`` against a hub that accepts and closes at once (another host holds the link,
or a crash loop): reconnects back off exponentially with jitter instead of spinning (the old
client made 13,326 connections in 8 s)."""

from __future__ import annotations

import asyncio

import pytest

from host_tools import hublink


def test_reconnects_back_off_when_the_hub_closes_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float, *a: object) -> None:
        delays.append(delay)          # the back-off the client asked for, not waited for
        await real_sleep(0)

    async def go() -> int:
        accepted = [0]

        async def slam(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted[0] += 1
            w.close()

        server = await asyncio.start_server(slam, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = hublink.TcpLink("127.0.0.1", port)          # hubctl record's TCP link
        stop = asyncio.Event()
        monkeypatch.setattr(hublink.asyncio, "sleep", recorded_sleep)
        task = asyncio.create_task(hublink.stay_connected(link, lambda c, t: None, stop,
                                                          connect_timeout=5.0))
        while link.connects < 12 and not task.done():
            await real_sleep(0.01)
        monkeypatch.undo()
        stop.set()
        await task
        server.close()
        return link.connects

    connects = asyncio.run(asyncio.wait_for(go(), 120.0))
    waits = [d for d in delays if d > 0]
    assert len(waits) >= connects - 1, f"{connects} connects but only {len(waits)} back-offs"
    assert sum(waits[:10]) > 10 * waits[0]         # growing: 0.1 s doubling, not constant
    assert max(waits) <= 2.0
