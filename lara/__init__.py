"""LARA: Latent Action Representation Alignment.

`lara.attach(vla)` adds a jointly trained latent action model and an alignment loss to any VLA;
`lara.detach(model)` hands back the untouched VLA for inference.

Names load on first use, so light parts (the HDF5 writer the robot recorder uses under the system
Python) import without torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "attach": "lara.model",
    "detach": "lara.model",
    "LaraModel": "lara.model",
    "save": "lara.checkpoint",
    "load": "lara.checkpoint",
    "load_lam": "lara.checkpoint",
    "save_lam": "lara.checkpoint",
    "LaraConfig": "lara.config",
    "AlignConfig": "lara.config",
    "LAMConfig": "lara.config",
    "LatentActionModel": "lara.lam",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lara' has no attribute '{name}'")
