"""atheris: the command decoder and validator. Invariants: never raises, exactly one result per
command payload, and anything that is not a valid command gets an error code. Half the inputs
are raw bytes (through the chunk reassembler too); half are structurally valid commands with
fuzzed field values (to reach the validation of every field).

    python tests/fuzz/fuzz_command.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError

    from hub.daemon.control import Control
    from hub.wire import SCHEMA_VERSION, Reassembler, pb
    from tests.test_control import FakeHub

CTL = Control(FakeHub())
FLOAT_FIELDS = ("block_ms", "band_low_hz", "band_high_hz", "threshold", "exclude_ms",
                "refractory_ms", "warmup_s", "noise_tau_s", "neighbor_radius_um", "bin_ms",
                "lfp_cutoff_hz", "lfp_rate_hz")
INT_FIELDS = ("filter_order", "reference_group_size", "snippet_pre", "snippet_post",
              "snippet_channels")


def structured(fdp: atheris.FuzzedDataProvider) -> bytes:
    cmd = pb.Command(request_id=fdp.ConsumeIntInRange(0, 2**32 - 1),
                     schema_version=SCHEMA_VERSION if fdp.ConsumeBool() else
                     fdp.ConsumeIntInRange(0, 5))
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        ps = cmd.configure.pipeline
        for name in FLOAT_FIELDS:
            if fdp.ConsumeBool():
                setattr(ps, name, fdp.ConsumeRegularFloat() if fdp.ConsumeBool()
                        else fdp.ConsumeFloat())
        for name in INT_FIELDS:
            if fdp.ConsumeBool():
                setattr(ps, name, fdp.ConsumeIntInRange(0, 2**32 - 1))
        for name, choices in (("reference", ["median", "average", "none", "x"]),
                              ("polarity", ["neg", "pos", "both", ""])):
            if fdp.ConsumeBool():
                setattr(ps, name, fdp.PickValueInList(choices))
        if fdp.ConsumeBool():
            cmd.configure.raw_channel_mask = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4))
        if fdp.ConsumeBool():
            cmd.configure.outage_buffer_s = fdp.ConsumeFloat()
    elif kind == 1:
        cmd.set_thresholds.threshold = fdp.ConsumeFloat()
    elif kind == 2:
        lt = cmd.load_templates
        lt.n_units = fdp.ConsumeIntInRange(0, 3000)
        lt.n_channels = fdp.ConsumeIntInRange(0, 70)
        lt.n_samples = fdp.ConsumeIntInRange(0, 600)
        lt.waveforms.extend([fdp.ConsumeFloat() for _ in range(fdp.ConsumeIntInRange(0, 64))])
        lt.channels.extend([fdp.ConsumeIntInRange(0, 99) for _ in range(
            fdp.ConsumeIntInRange(0, 8))])
    elif kind == 3:
        cmd.time_sync.host_time_ns = fdp.ConsumeIntInRange(0, 2**64 - 1)
    return cmd.SerializeToString()


def valid(payload: bytes) -> bool:
    """Whether the payload decodes to a command this hub must accept."""
    try:
        cmd = pb.Command.FromString(payload)
    except DecodeError:
        return False
    return cmd.schema_version == SCHEMA_VERSION and cmd.WhichOneof("command") is not None


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    payloads: list[bytes]
    if fdp.ConsumeBool():
        payloads = [structured(fdp)]
    elif fdp.ConsumeBool():
        r = Reassembler()
        payloads = []
        while fdp.remaining_bytes():
            payloads += r.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 250)))
    else:
        payloads = [fdp.ConsumeBytes(fdp.remaining_bytes())]
    for p in payloads:
        before = CTL.handled
        res = CTL.handle(p)
        assert CTL.handled == before + 1
        assert isinstance(res, pb.CommandResult)
        if not valid(p):
            assert res.code != pb.RESULT_OK, (p, res)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
