"""atheris: the hub's command path — chunks → CommandPort (reassembler, queue) → Control →
results — against a hub whose online sorter is the real kernel. Invariants: never raises,
exactly one result per command payload (in order, with its request id), anything that is not
a valid command gets an error code, and nothing a host sends is an INTERNAL error (a kernel's
refusal is INVALID_ARGUMENT). Half the inputs are raw bytes (as chunks); half are structurally
valid commands with fuzzed field values (to reach the validation of every field, LoadTemplates'
noise σ, basis, alignment, rate and multi-part staging included).

    python tests/fuzz/fuzz_command.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    import asyncio

    from google.protobuf.message import DecodeError

    from hub.daemon.control import CommandPort, Control, Templates
    from hub.dsp.pipeline import Pipeline, PipelineConfig
    from hub.dsp.sorting import load_templates
    from hub.wire import SCHEMA_VERSION, Chunker, Reassembler, pb
    from tests.test_control import FakeHub


class SortingHub(FakeHub):
    """The fake hub, with the real pipeline and online sorter behind LoadTemplates, loaded
    the daemon's way (the set as a templates file: noise seed, basis, alignment)."""

    def __init__(self) -> None:
        super().__init__()
        self.real = Pipeline(PipelineConfig(sort=True), 20, 30000.0)

    async def load_templates(self, templates: Templates) -> None:
        load_templates(self.real, templates.template_set(20, 30000.0, 16))


CTL = Control(SortingHub())
LOOP = asyncio.new_event_loop()
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
        lt.n_units = fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else lt.n_units
        lt.n_channels = fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeBool() else lt.n_channels
        lt.n_samples = 48 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 600)
        n_wf = lt.n_units * lt.n_channels * lt.n_samples
        n_wf = n_wf if n_wf <= 300 and fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 64)
        lt.waveforms.extend([fdp.ConsumeFloat() if fdp.ConsumeBool() else
                             fdp.ConsumeIntInRange(-100, 100) for _ in range(n_wf)])
        n_ch = lt.n_units * lt.n_channels
        n_ch = n_ch if n_ch <= 64 and fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 8)
        lt.channels.extend([fdp.ConsumeIntInRange(0, 25) if fdp.ConsumeBool() else
                            fdp.ConsumeIntInRange(0, 2**32 - 1) for _ in range(n_ch)])
        if fdp.ConsumeBool():
            lt.unit_ids.extend([fdp.ConsumeIntInRange(0, 2**32 - 1)
                                for _ in range(fdp.ConsumeIntInRange(0, 3))])
        if fdp.ConsumeBool():            # the templates file's other fields (noise σ, …)
            n = 20 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 24)
            lt.noise.extend([fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else
                             fdp.ConsumeFloat() for _ in range(n)])
        if fdp.ConsumeBool():
            lt.n_features = fdp.ConsumeIntInRange(0, 4) if fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(0, 2**32 - 1)
            n = lt.n_features * lt.n_samples
            n = n if n <= 300 and fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 64)
            lt.basis.extend([fdp.ConsumeFloat() if fdp.ConsumeBool() else
                             fdp.ConsumeIntInRange(-2, 2) for _ in range(n)])
        if fdp.ConsumeBool():
            lt.pre = 16 if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 2**32 - 1)
        if fdp.ConsumeBool():
            lt.sampling_frequency = 30000.0 if fdp.ConsumeBool() else fdp.ConsumeFloat()
        if fdp.ConsumeBool():            # a part of a multi-part set
            lt.n_parts = fdp.ConsumeIntInRange(0, 4) if fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(0, 2**32 - 1)
            lt.part = fdp.ConsumeIntInRange(0, 4) if fdp.ConsumeBool() else \
                fdp.ConsumeIntInRange(0, 2**32 - 1)
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


async def through_port(chunks: list[bytes]) -> list[pb.CommandResult]:
    out: list[pb.CommandResult] = []
    port = CommandPort(CTL, out.append)
    task = asyncio.get_running_loop().create_task(port.run())
    for c in chunks:
        port.feed(c)
    while not port.idle:
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return out


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    chunks: list[bytes]
    if fdp.ConsumeBool():
        chunks = Chunker().chunks(structured(fdp))
    elif fdp.ConsumeBool():
        chunks = []
        while fdp.remaining_bytes():
            chunks.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 250)))
    else:
        chunks = Chunker().chunks(fdp.ConsumeBytes(min(fdp.remaining_bytes(), 60000)))
    payloads: list[bytes] = []
    r = Reassembler()
    for c in chunks:
        payloads += r.feed(c)
    before = CTL.handled
    results = LOOP.run_until_complete(through_port(chunks))
    assert len(results) == len(payloads) == CTL.handled - before, (payloads, results)
    for p, res in zip(payloads, results, strict=True):
        assert isinstance(res, pb.CommandResult)
        assert res.code != pb.RESULT_INTERNAL, (p, res)
        if not valid(p):
            assert res.code != pb.RESULT_OK, (p, res)
        else:
            assert res.request_id == pb.Command.FromString(p).request_id


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
