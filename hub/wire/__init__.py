"""The wire format: generated protobuf messages (``hub_pb2``, from proto/hub.proto by
``make proto``) and the notification-sized chunk framing (:mod:`hub.wire.framing`)."""

from hub.wire import hub_pb2 as pb
from hub.wire.framing import (
    CHUNK_HEADER_SIZE,
    DEFAULT_PAYLOAD_SIZE,
    Chunker,
    FramingError,
    Reassembler,
)

SCHEMA_VERSION: int = pb.SCHEMA_VERSION

__all__ = ["CHUNK_HEADER_SIZE", "DEFAULT_PAYLOAD_SIZE", "SCHEMA_VERSION", "Chunker",
           "FramingError", "Reassembler", "pb"]
