"""The implant link (DESIGN §3.1): framed int16 samples from the implant over a serial port,
pty, TCP or unix socket. :mod:`hub.link.frame` is the format and an incremental parser,
:mod:`hub.link.blocks` turns frames into consecutive blocks with explicit gaps, and
:mod:`hub.link.transport` opens the byte stream from an address string."""

from hub.link.blocks import BlockAssembler, Gap
from hub.link.frame import Frame, FrameParser, LinkError, LinkStats, encode_frame

__all__ = ["BlockAssembler", "Frame", "FrameParser", "Gap", "LinkError", "LinkStats",
           "encode_frame"]
