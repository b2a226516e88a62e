"""The backbones: one folder each (token_vla, pi0, openvla, pi05) and the table that lists them
(`lara.vla.backbones`). Names load on first use, so the table (and `lara.attach`) import no model code."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TokenVLA": "lara.vla.token_vla",
    "TokenVLAConfig": "lara.vla.token_vla",
    "TokenVLAPolicy": "lara.vla.token_vla",
    "FlowPolicy": "lara.vla.pi0",
    "load_policy": "lara.vla.backbones",
    "export_vla": "lara.vla.backbones",
    "BACKBONES": "lara.vla.backbones",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lara.vla' has no attribute '{name}'")
