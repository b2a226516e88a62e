"""What a training recipe declares about itself, in its own module: `RECIPE = Recipe(...)` beside its config section
and its `run(cfg)`. `lara train` (the dispatch), `RecipeConfig` (the `recipe` choices and one section per recipe) and
the run-folder check (which changes leave a run alone) read these declarations through one table,
`lara.adapters.recipes.RECIPES`. Adding a recipe is one module and one row (a preset in adapters/configs/ is optional:
`lara train path/to/my.yaml` runs any file).

    name        `recipe:` in a config, e.g. 'posttrain'; the module's `run(cfg: RecipeConfig) -> dict` trains it
    section     its config section, e.g. 'posttrain', and `config`, the model of that section's fields, with
    about       the section's description
    ignores     sections or dotted fields it never reads: a change there changes nothing in its run, so a re-run of a
                finished run folder is not refused for it (lara.adapters.run_folder)
    check       optional: given the whole `RecipeConfig`, raises ValueError on one it cannot run (e.g. refine_lam with
                FSDP), as a validator does

The config imports every recipe module to learn its section, so a recipe module imports only light things at its
top (pydantic, this module, the run-folder guard, `lara` itself, which loads lazily); what training needs (torch,
accelerate, the trainer) it imports inside `run`. It names `RecipeConfig` in annotations only (under TYPE_CHECKING).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """The base of every config model: unknown keys are refused, values are checked on assignment too."""

    # allow_inf_nan=False: every float field must be finite (train.lr=.inf trained to NaN weights and exited 0)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Recipe:
    """One training recipe, as its module declares it (see the module docstring)."""

    name: str
    section: str
    config: type[Strict]
    about: str
    ignores: tuple[str, ...]
    check: Callable[[BaseModel], None] | None = None  # called with the RecipeConfig
