"""Spawning the BLE bench's processes (air, synthetic hub) from asyncio code: tests, benchmark.

Every child is started in its own process group and killed on exit, so nothing outlives the
caller (``async with Spawned.start(...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class Spawned:
    """A child Python process that prints JSON lines on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self.first: dict[str, Any] = {}

    @classmethod
    async def spawn(cls, name: str, module: str, *args: str,
                    ready_timeout: float = 20.0, log_path: Path | None = None) -> Spawned:
        stderr: Any = asyncio.subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = open(log_path, "ab")  # noqa: SIM115 — handed to the child
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if log_path is not None:
            stderr.close()
        self = cls(proc, name)
        try:
            first = await asyncio.wait_for(self.readline(), ready_timeout)
        except BaseException:
            self.kill()
            raise
        if first is None:
            self.kill()
            raise RuntimeError(f"{name} exited before it was ready (see {log_path})")
        self.first = first
        return self

    async def readline(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return None
            line = raw.decode().strip()
            self.lines.append(line)
            if line.startswith("{"):
                out: dict[str, Any] = json.loads(line)
                return out

    async def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """SIGTERM, wait, and return the last JSON line the child printed."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        last = None
        try:
            async with asyncio.timeout(timeout):
                while (msg := await self.readline()) is not None:
                    last = msg
                await self.proc.wait()
        except TimeoutError:
            self.kill()
        return last

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def spawned(name: str, module: str, *args: str, log_path: Path | None = None,
                  ready_timeout: float = 20.0) -> AsyncIterator[Spawned]:
    child = await Spawned.spawn(name, module, *args, log_path=log_path,
                                ready_timeout=ready_timeout)
    try:
        yield child
    finally:
        child.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(child.proc.wait(), 5)


def model_args(model: dict[str, Any]) -> list[str]:
    """hil.air arguments for a link-model dict."""
    return ["--model-json", json.dumps(model)]
