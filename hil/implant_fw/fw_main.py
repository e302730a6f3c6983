"""Implant emulator firmware (MicroPython): frames on the implant link at the implant's own clock.

Started with a configuration: on the unix port ``micropython -m main '{JSON}'`` (or a file
name), on a board from ``implant_cfg.json`` beside this file (``make flash-emulator``). Keys
(defaults in ``DEFAULTS``): mode ``gen`` (a population of units, ``gen.py``) or ``replay``
(a recording fed in chunks, ``replay.py``); the frame format (channels, fs, spf); the link,
control and feed streams (``hal.py``); the clock (``clock_ppm``, ``wander_ppm``,
``wander_tau_s``, ``clock.py``); faults (``drop``, ``corrupt``, ``junk`` probabilities per
frame, ``jitter_us`` send jitter, ``stall_every_s``/``stall_ms`` stalls, ``reboot_at_s``);
``duration_s`` (0: forever).

The frame clock never waits: a frame whose due time passed more than ``fifo_ms`` ago (the
implant's transmit FIFO) is dropped with its counter (*overrun*), as is a frame the link cannot
take. JSON lines on the log stream (stderr on the unix port) are the truth the host is judged
against: ``boot``/``clk`` (clock segments: frame, due time, error), ``vel`` (velocity
applied at a frame), ``stats``.
"""

import struct
import sys

try:
    from typing import Any
except ImportError:            # MicroPython: annotations are not evaluated
    pass

import control
import hal
from clock import Rng, SampleClock
from link import FrameBuf

VERSION = "1.0"
DEFAULTS: "dict[str, Any]" = {
    "mode": "gen", "channels": 32, "fs": 30000, "spf": 0, "seed": 1, "units": 0, "noise": 20,
    "link": "stdout", "control": "", "feed": "", "log": True, "log_spikes": False,
    "duration_s": 0, "clock_ppm": 0.0, "wander_ppm": 0.0, "wander_tau_s": 300,
    "drop": 0.0, "corrupt": 0.0, "junk": 0.0, "jitter_us": 0, "stall_every_s": 0,
    "stall_ms": 0, "fifo_ms": 250, "reboot_at_s": [], "boot_ms": 300, "velocity": "control",
    "start_counter": 0, "stats_every_s": 10,
}


def _ppm(p: float) -> int:
    """Probability → per million (integer draws in the frame loop)."""
    return int(p * 1_000_000 + 0.5)


class Firmware:
    def __init__(self, cfg: "dict[str, Any]") -> None:
        c: dict[str, Any] = dict(DEFAULTS)
        c.update(cfg)
        self.cfg = c
        self.fs, self.nch = int(c["fs"]), int(c["channels"])
        self.spf = int(c["spf"]) or max(1, (self.fs + 500) // 1000)
        self.rng = Rng(int(c["seed"]))
        self.frame = FrameBuf(self.nch, self.spf, self.fs)
        self.clock = SampleClock(self.fs, self.spf, int(float(c["clock_ppm"]) * 1000),
                                 int(float(c["wander_ppm"]) * 1000), int(c["wander_tau_s"]),
                                 int(c["seed"]))
        self.log = hal.Log(bool(c["log"]))
        self.link = hal.open_stream(c["link"])
        self.ctl_stream = (self.link if c["control"] == "link" else
                           hal.open_stream(c["control"]) if c["control"] else None)
        if c["control"] == "link" and hasattr(self.link, "take_input"):
            self.link.take_input()
        self.ctl = control.ControlParser()
        self.gen = None
        self.feed = None
        if c["mode"] == "gen":
            from gen import Population
            units = int(c["units"]) or max(4, self.nch // 8)
            self.gen = Population(self.nch, self.fs, self.spf, units, self.rng, int(c["noise"]))
        elif c["mode"] == "replay":
            from replay import ReplayFeed
            self.feed = ReplayFeed(hal.open_stream(c["feed"]), self.nch, self.spf, self.fs)
        else:
            raise ValueError("mode %r: want gen or replay" % c["mode"])
        self.p_drop, self.p_corrupt = _ppm(c["drop"]), _ppm(c["corrupt"])
        self.p_junk, self.jitter_us = _ppm(c["junk"]), int(c["jitter_us"])
        self.fifo_us = int(c["fifo_ms"]) * 1000
        self.stall_every = int(float(c["stall_every_s"]) * self.fs) // self.spf
        self.stall_us = int(c["stall_ms"]) * 1000
        self.stall_until: int | None = None
        self.reboots = sorted(int(float(t) * self.fs) // self.spf for t in c["reboot_at_s"])
        self.walk = c["velocity"] == "walk"
        self.st = {"frames": 0, "sent": 0, "dropped_fault": 0, "dropped_link": 0,
                   "overruns": 0, "underruns": 0, "corrupted": 0, "junk_bytes": 0,
                   "reboots": 0, "spikes": 0, "busy_us": 0, "max_late_us": 0,
                   "control_messages": 0, "control_bad": 0}
        self.running = True
        self.total = 0             # frames since power-up (across reboots)
        self.min_late = 1 << 30

    # ---------------------------------------------------------------- log
    def _boot_line(self) -> None:
        ck = self.clock
        self.log.line('{"ev":"boot","version":"%s","counter":%d,"due":%d,"ppb":%d,'
                      '"fs":%d,"spf":%d,"channels":%d,"mode":"%s"}'
                      % (VERSION, self.cfg["start_counter"], ck.due, ck.ppb, self.fs, self.spf,
                         self.nch, self.cfg["mode"]))

    def _clk_line(self) -> None:
        ck = self.clock
        self.log.line('{"ev":"clk","counter":%d,"due":%d,"rem":%d,"den":%d,"ppb":%d,'
                      '"min_late_us":%d}' % (self.cfg["start_counter"] + ck.k, ck.due, ck.rem,
                                             ck.den, ck.ppb, self.min_late))
        self.min_late = 1 << 30

    def stats_line(self, final: bool = False) -> str:
        st = self.st
        st["spikes"] = self.gen.spikes if self.gen is not None else 0
        st["underruns"] = self.feed.underruns if self.feed is not None else 0
        st["control_messages"], st["control_bad"] = self.ctl.messages, self.ctl.bad
        items = ",".join('"%s":%d' % (k, v) for k, v in st.items())
        return '{"ev":"stats","final":%s,"connects":%d,%s}' % (
            "true" if final else "false", self.link.connects, items)

    # ---------------------------------------------------------------- control
    def _service(self) -> None:
        s = self.ctl_stream
        if s is None or not s.connect():
            return
        data = s.recv(256)
        if not data:
            if getattr(s, "stop_requested", False):
                self.running = False
            return
        for typ, p in self.ctl.feed(data):
            self._apply(typ, p)

    def _apply(self, typ: int, p: bytes) -> None:
        if typ == control.VELOCITY and len(p) >= 8 and self.gen is not None:
            vx, vy, seq = struct.unpack_from("<hhI", p, 0)
            self.gen.set_velocity(vx, vy)
            self.log.line('{"ev":"vel","seq":%d,"counter":%d,"vx":%d,"vy":%d}'
                          % (seq, self.cfg["start_counter"] + self.clock.k, vx, vy))
        elif typ == control.SET and len(p) >= 5:
            pid, v = struct.unpack_from("<Bi", p, 0)
            if pid == control.P_CLOCK_PPB:
                self.clock.set_error(v)
                self._clk_line()
            elif pid == control.P_WANDER_PPB:
                self.clock.sigma_ppb = v
            elif pid == control.P_DROP_PPM:
                self.p_drop = v
            elif pid == control.P_CORRUPT_PPM:
                self.p_corrupt = v
            elif pid == control.P_JUNK_PPM:
                self.p_junk = v
            elif pid == control.P_JITTER_US:
                self.jitter_us = v
            elif pid == control.P_STALL_MS:
                self.stall_until = hal.ticks_add(hal.ticks_us(), v * 1000)
        elif typ == control.REBOOT:
            self.reboot(struct.unpack_from("<H", p, 0)[0] if len(p) >= 2 else 300)
        elif typ == control.STOP:
            self.running = False

    # ---------------------------------------------------------------- frames
    def reboot(self, boot_ms: int) -> None:
        """Link down, boot time, then counter and clock phase from zero (state is lost)."""
        self.st["reboots"] += 1
        self.log.line('{"ev":"reboot","counter":%d}' % (self.cfg["start_counter"]
                                                         + self.clock.k))
        self.link.close()
        hal.sleep_us(boot_ms * 1000)
        self.clock.start(hal.ticks_us())
        if self.gen is not None:
            self.gen.active = []
        self._boot_line()

    def _frame(self, k: int, now: int) -> None:
        st, r = self.st, self.rng
        st["frames"] += 1
        fr = self.frame
        late = hal.ticks_diff(now, self.clock.due)
        if late > st["max_late_us"]:
            st["max_late_us"] = late
        if late < self.min_late:        # the least late frame of this clock segment (log)
            self.min_late = late
        first = (self.cfg["start_counter"] + k) * self.spf
        if late > self.fifo_us:            # the transmit FIFO overflowed while we were late
            st["overruns"] += 1
            if self.gen is not None:       # the units keep firing while frames are lost
                self.gen.fill(fr.samples, first)
            return
        if self.gen is not None:
            self.gen.fill(fr.samples, first)
        elif self.feed is not None:
            self.feed.pump()
            if not self.feed.take(fr.samples_b):
                return
        if self.p_drop and r.below(1_000_000) < self.p_drop:
            st["dropped_fault"] += 1
            return
        buf = fr.seal(self.cfg["start_counter"] + k)
        if not self.link.connect():
            st["dropped_link"] += 1
            return
        if self.p_junk and r.below(1_000_000) < self.p_junk:
            junk = bytes(r.below(256) for _ in range(1 + r.below(63)))
            self.link.send(memoryview(junk))
            st["junk_bytes"] += len(junk)
        if self.p_corrupt and r.below(1_000_000) < self.p_corrupt:
            fr.items[r.below(len(fr.items))] ^= 0x00FF
            st["corrupted"] += 1
        if self.link.send(buf):
            st["sent"] += 1
        else:
            st["dropped_link"] += 1

    def _walk(self) -> None:
        """Internal movement signal (``velocity: walk``): a smooth bounded random walk."""
        g = self.gen
        if g is None:
            return
        r = self.rng
        vx = g.vx + (r.normal_q8() * 60 >> 8) - g.vx // 20
        vy = g.vy + (r.normal_q8() * 60 >> 8) - g.vy // 20
        g.set_velocity(vx, vy)
        self.log.line('{"ev":"vel","seq":0,"counter":%d,"vx":%d,"vy":%d}'
                      % (self.cfg["start_counter"] + self.clock.k, g.vx, g.vy))

    def run(self) -> None:
        ck, cfg = self.clock, self.cfg
        fps = max(1, self.fs // self.spf)
        end = int(float(cfg["duration_s"]) * self.fs) // self.spf
        stats_every = max(1, int(cfg["stats_every_s"])) * fps
        walk_every = max(1, fps // 20)
        ck.start(hal.ticks_us())
        self._boot_line()
        self.link.connect()
        send_at = ck.due
        while self.running and (not end or self.total < end):
            now = hal.ticks_us()
            if self.stall_until is not None:
                if hal.ticks_diff(self.stall_until, now) > 0:
                    self._service()
                    hal.sleep_us(500)
                    continue
                self.stall_until = None
            wait = hal.ticks_diff(send_at, now)
            if wait > 0:
                self._service()
                if self.feed is not None:
                    self.feed.pump()
                wait = hal.ticks_diff(send_at, hal.ticks_us())
                if wait > 0:
                    hal.sleep_us(wait if wait < 2000 else 2000)
                continue
            t0 = now
            k = ck.k
            self._frame(k, now)
            self.total += 1
            if ck.advance():
                self._clk_line()
            if self.walk and k % walk_every == 0:
                self._walk()
            if self.reboots and self.total >= self.reboots[0]:
                self.reboots.pop(0)
                self.reboot(int(cfg["boot_ms"]))
            if self.stall_every and self.total % self.stall_every == 0:
                self.stall_until = hal.ticks_add(hal.ticks_us(), self.stall_us)
            if self.total % stats_every == 0:
                self.log.line(self.stats_line())
            send_at = ck.due
            if self.jitter_us:
                send_at = hal.ticks_add(send_at, self.rng.below(self.jitter_us + 1))
            self.st["busy_us"] += hal.ticks_diff(hal.ticks_us(), t0)
        self.log.line(self.stats_line(final=True))
        self.link.close()


def load_config(argv: list[str]) -> "dict[str, Any]":
    import json
    cfg: dict[str, Any] = {}
    if len(argv) > 1:
        arg = argv[1]
        if arg.lstrip().startswith("{"):
            cfg = json.loads(arg)
        else:
            with open(arg) as f:
                cfg = json.load(f)
    else:
        try:
            with open("implant_cfg.json") as f:
                cfg = json.load(f)
        except OSError:
            pass
    return cfg


def main() -> None:
    fw = Firmware(load_config(sys.argv))
    try:
        fw.run()
    except KeyboardInterrupt:      # SIGINT on the unix port, Ctrl-C on a board's REPL
        fw.log.line(fw.stats_line(final=True))
        fw.link.close()


if __name__ == "__main__":
    main()
