"""Uplinks carry the hub's framed packets to one host and commands back (DESIGN §3.4, §5)."""

from hub.uplink.base import CommandHandler, Uplink, UplinkStats

__all__ = ["CommandHandler", "Uplink", "UplinkStats"]
