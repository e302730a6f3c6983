"""hubctl decode / view fail loudly on bad input: a clear message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.cli import main
from host_tools.packetlog import Kind, PacketLogWriter


def test_decode_rejects_a_file_that_is_not_a_packet_log(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    bad = tmp_path / "old.log"
    bad.write_bytes(b"\x10\x00" + b"\xb5\x01" * 8)        # the old length-prefixed format
    assert main(["decode", str(bad), str(tmp_path / "s.nwb")]) == 2
    assert "not a packet log" in capsys.readouterr().err
    assert not (tmp_path / "s.nwb").exists()


def test_decode_of_a_log_without_hub_data(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "empty.log"
    with PacketLogWriter(log) as w:
        w.event(Kind.CONNECT, {"address": "127.0.0.1:1"})
        w.chunk(b"\x00" * 30)                               # not a framed chunk
    assert main(["decode", str(log), str(tmp_path / "s.nwb")]) == 2
    assert "no hub packets" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [log]                 # no partial output left behind


def test_decode_will_not_overwrite_and_wants_nwb(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "p.log"
    PacketLogWriter(log).close()
    out = tmp_path / "s.nwb"
    out.write_bytes(b"x")
    assert main(["decode", str(log), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["decode", str(log), str(tmp_path / "s.h5")]) == 2
    assert "must end in .nwb" in capsys.readouterr().err


def test_view_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path / "none.nwb"), "--out", str(tmp_path / "r")]) == 2
    assert "no such NWB file" in capsys.readouterr().err


def test_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from host_tools import nwb_cli, nwb_record, view_cli

    for mod in (nwb_cli, nwb_record, view_cli):
        p = argparse.ArgumentParser()
        mod.add_arguments(p)
        for a in p._actions:
            assert a.help, f"{mod.__name__}: {a.dest} has no help"
