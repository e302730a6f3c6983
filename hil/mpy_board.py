"""A MicroPython "board" on the unix port: its REPL on a pseudo-terminal, served over TCP so
``mpremote connect socket://127.0.0.1:PORT`` talks to it as to a USB-serial board.

    python -m hil.mpy_board BOARD_DIR [--ready-file PORT.json]

``BOARD_DIR`` is the board's filesystem (the unix port's VfsPosix: what ``mpremote fs cp``
writes lands there). Like a board, it boots into ``main.py`` when there is one (``micropython
-i main.py``: the REPL follows when main.py ends or is interrupted with Ctrl-C) and boots again
after a soft reset (the unix port exits where a board reboots; the bridge restarts it). One TCP
client at a time; the "board" stays powered between clients, as a board stays plugged in.
SIGTERM (or SIGINT) powers it off: the unix-port process ends with the bridge.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import tty
from pathlib import Path

from hil.mpy_runtime import tool

log = logging.getLogger(__name__)


class Board:
    """The unix-port process on a PTY, restarted whenever it exits (a reboot)."""

    def __init__(self, folder: Path, heap: str = "4M") -> None:
        self.folder, self.heap = folder, heap
        self.master = -1
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0

    def boot(self) -> None:
        if self.master >= 0:
            os.close(self.master)
        master, slave = os.openpty()
        tty.setraw(master)
        args = [tool("micropython"), "-X", f"heapsize={self.heap}"]
        if (self.folder / "main.py").exists():
            args += ["-i", "main.py"]
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                     cwd=self.folder, start_new_session=True,
                                     env={**os.environ, "MICROPYPATH": f".:{self.folder}"})
        os.close(slave)
        self.master = master
        self.boots += 1
        log.info("board boot %d (%s)", self.boots, " ".join(args[3:]) or "REPL")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def serve(folder: Path, ready_file: Path | None = None, idle_exit_s: float = 0.0) -> None:
    """Serves the board until killed (or ``idle_exit_s`` without a client, if > 0)."""
    board = Board(folder)
    board.boot()
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    if ready_file is not None:
        ready_file.write_text(json.dumps({"port": f"socket://127.0.0.1:{port}"}))
    print(json.dumps({"port": f"socket://127.0.0.1:{port}"}), flush=True)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, "accept")
    client: socket.socket | None = None
    last_client = time.monotonic()
    registered_master = -1
    try:
        while True:
            if not board.alive():
                if registered_master >= 0:
                    sel.unregister(registered_master)
                    registered_master = -1
                board.boot()
            if registered_master != board.master:
                sel.register(board.master, selectors.EVENT_READ, "board")
                registered_master = board.master
            for key, _ in sel.select(0.2):
                if key.data == "accept":
                    conn, _ = srv.accept()
                    if client is not None:
                        conn.close()              # one client at a time
                        continue
                    client = conn
                    sel.register(client, selectors.EVENT_READ, "client")
                elif key.data == "board":
                    try:
                        data = os.read(board.master, 4096)
                    except OSError:               # the process exited: reboot next round
                        data = b""
                    if data and client is not None:
                        with contextlib.suppress(OSError):
                            client.sendall(data)
                elif key.data == "client" and client is not None:
                    data = client.recv(4096)
                    if not data:
                        sel.unregister(client)
                        client.close()
                        client = None
                        last_client = time.monotonic()
                    else:
                        os.write(board.master, data)
            if (idle_exit_s and client is None
                    and time.monotonic() - last_client > idle_exit_s):
                return
    finally:
        board.close()
        srv.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="the board's filesystem")
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--idle-exit", type=float, default=0.0, help="exit after S without a client")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s board %(message)s",
                        stream=sys.stderr)
    args.folder.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the serve loop through its finally: the board process goes with the bridge
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.folder.resolve(), args.ready_file, args.idle_exit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
