"""Every training recipe `lara train` runs, one row each: its name and its module, which declares the rest itself
(`RECIPE`, a `lara.adapters.recipe.Recipe`: its config section, the sections it ignores, what it cannot run) beside its
`run(cfg)`. Adding a recipe is its module and one row here."""

from __future__ import annotations

from importlib import import_module

from .recipe import Recipe

RECIPES: dict[str, str] = {
    "pretrain": "lara.adapters.pretrain",  # paradigm 1: the LAM on frames first, then VLA + LAM jointly
    "posttrain": "lara.adapters.posttrain",  # paradigm 2: a pretrained VLA fine-tuned with LARA
    "refine_lam": "lara.adapters.refine_lam",  # paradigm 3: the LAM refined with actions and the alignment signal
    "latent_pretrain": "lara.adapters.latent_pretrain",  # LAPA: the VLA learns to predict a LAM's codes
}


def declared(name: str) -> Recipe:
    """What the recipe's module declares (importing it is light: `lara.adapters.recipe` says why)."""
    return import_module(RECIPES[name]).RECIPE
