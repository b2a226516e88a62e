"""How each VLA family is built, fed and saved: the only model-specific code of the recipes.

A family turns the reader's samples (`lara.data.LiberoDataset`) into the VLA's own training inputs plus
the LARA keys, builds or loads the VLA, and saves it natively. Add a family by adding a module with a
`Family` subclass and a line in `FAMILIES`.
"""

from __future__ import annotations

from importlib import import_module

from .base import Family, lara_inputs

FAMILIES = {
    "token_vla": "lara.adapters.families.token_vla:TokenVLAFamily",
    "pi0": "lara.adapters.families.pi0:PI0Family",
    "openvla": "lara.adapters.families.openvla:OpenVLAFamily",
}


def family_class(name: str) -> type[Family]:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family '{name}'; known: {', '.join(FAMILIES)}")
    module, attr = FAMILIES[name].split(":")
    return getattr(import_module(module), attr)


__all__ = ["FAMILIES", "Family", "family_class", "lara_inputs"]
