"""A templates file (hub/dsp/sorting.py) as ``LoadTemplates`` commands: every field the hub's
sorter uses when it loads the file — templates, unit ids, the noise σ per channel, the feature
basis, the alignment (``pre``) and the sampling rate — so a hub loaded over the link sorts
exactly as one loaded from the file (tests/test_templates_wire.py compares the two).

Each unit travels with all its channel rows (the file's dense (U, C, L) array is rebuilt
bit for bit on the hub). A set that does not fit one command (a packet is at most 65535 bytes;
a 32-channel unit of 48 samples is 6 KiB) is split into parts, units in file order, the
set-wide fields in part 0; the hub stages the parts and applies the set with the last one.
"""

from __future__ import annotations

import logging

import numpy as np

from hub.dsp.sorting import TemplateSet
from hub.wire import SCHEMA_VERSION, pb
from hub.wire.framing import MAX_PACKET

log = logging.getLogger(__name__)

#: room left in each packet for the Command around the LoadTemplates and the request id
HEADROOM = 256


def _part(ts: TemplateSet, units: slice, first: bool) -> pb.LoadTemplates:
    t = ts.templates[units]
    u, c, n = t.shape
    msg = pb.LoadTemplates(n_units=u, n_channels=c, n_samples=n,
                           waveforms=t.astype(np.float32).reshape(-1).tolist(),
                           channels=np.tile(np.arange(c, dtype=np.uint32), u).tolist(),
                           unit_ids=ts.unit_ids[units].tolist())
    if first:
        msg.noise.extend(ts.noise.astype(np.float32).tolist())
        if ts.basis.size:
            msg.n_features = int(ts.basis.shape[0])
            msg.basis.extend(ts.basis.astype(np.float32).reshape(-1).tolist())
        msg.pre = ts.pre
        msg.sampling_frequency = ts.sampling_frequency
    return msg


def load_templates_parts(ts: TemplateSet, max_bytes: int = MAX_PACKET - HEADROOM
                         ) -> list[pb.LoadTemplates]:
    """The ``LoadTemplates`` messages that carry ``ts`` whole (one when it fits
    ``max_bytes``); ValueError when a set cannot be sent (no units, or one unit alone is too
    large for a command)."""
    ts.validate()
    n_units = int(ts.unit_ids.size)
    if n_units == 0:
        raise ValueError("the templates file holds no units: nothing to load")
    parts: list[pb.LoadTemplates] = []
    a = 0
    while a < n_units:
        b = n_units
        msg = _part(ts, slice(a, b), not parts)
        while msg.ByteSize() > max_bytes:
            if b - a == 1:
                raise ValueError(f"unit {int(ts.unit_ids[a])}: {msg.ByteSize()} bytes alone "
                                 f"exceed one command ({max_bytes} bytes)")
            # shrink in proportion to the overshoot (a few rounds at most)
            b = a + max(1, min(b - a - 1, (b - a) * max_bytes // msg.ByteSize()))
            msg = _part(ts, slice(a, b), not parts)
        parts.append(msg)
        a = b
    if len(parts) > 1:
        for i, m in enumerate(parts):
            m.part, m.n_parts = i, len(parts)
    log.debug("%d units in %d LoadTemplates part(s), %d bytes", n_units, len(parts),
              sum(m.ByteSize() for m in parts))
    return parts


def load_templates_commands(ts: TemplateSet, first_request_id: int = 1) -> list[pb.Command]:
    """The parts as commands with consecutive request ids (for a link without a session)."""
    return [pb.Command(request_id=first_request_id + i, schema_version=SCHEMA_VERSION,
                       load_templates=m)
            for i, m in enumerate(load_templates_parts(ts))]
