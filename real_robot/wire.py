"""Moved to `lara.serving.wire` (the policy server here and every client share it); this name stays for code that
imports it from here."""

from lara.serving.wire import WireError, packb, unpackb

__all__ = ["WireError", "packb", "unpackb"]
