"""A training recipe is a module plus one row (issue 36): the module declares its name, its config section and the
sections it ignores (`RECIPE`, a `lara.adapters.recipe.Recipe`), `lara.adapters.recipes.RECIPES` lists it, and the
config, `lara train` and the run-folder check read nothing else about it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from lara.adapters.config import RecipeConfig, _field_names, load_recipe
from lara.adapters.recipes import RECIPES, declared
from lara.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_every_row_declares_its_name_section_and_what_it_ignores():
    fields = RecipeConfig.model_fields
    assert typing.get_args(fields["recipe"].annotation) == tuple(RECIPES)
    sections = []
    for name in RECIPES:
        recipe = declared(name)
        assert recipe.name == name
        field = fields[recipe.section]
        assert field.annotation is recipe.config and field.description == recipe.about
        assert isinstance(field.default_factory(), recipe.config)
        sections.append(recipe.section)
        for ignored in recipe.ignores:  # a name that is no field would ignore nothing, silently
            *parents, last = ignored.split(".")
            assert last in _field_names(RecipeConfig, parents), f"{name} ignores {ignored!r}, which is no field"
    assert list(fields)[-len(sections):] == sections  # after the fields every recipe shares, in the table's order


def test_the_config_loader_accepts_every_row_and_names_them_all_on_a_typo(tmp_path):
    preset = tmp_path / "any.yaml"
    preset.write_text("recipe: posttrain\nmodel: {family: token_vla}\ndata: {paths: [data/x]}\n")
    for name in RECIPES:
        extra = ["latent.lam_from=runs/x/final/lara"] if name == "latent_pretrain" else []
        assert load_recipe(str(preset), [f"recipe={name}", *extra]).recipe == name
    with pytest.raises(InputError) as caught:
        load_recipe(str(preset), ["recipe=posttrian"])
    assert all(repr(name) in str(caught.value) for name in RECIPES)


def test_the_declarations_import_no_training_code():
    """The config imports every recipe module for its section: a recipe imports torch and the trainer in `run`."""
    code = ("import sys; from lara.adapters.config import RecipeConfig; from lara.adapters.recipes import RECIPES, "
            "declared; [declared(n) for n in RECIPES]; "
            "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


TOY_RECIPE = '''
"""A toy recipe: what adapters/<name>.py holds."""
from pydantic import Field

from lara.adapters.recipe import Recipe, Strict
from lara.adapters.run_folder import holds_run_folder


class ToyConfig(Strict):
    repeats: int = Field(2, ge=1, description="How often the toy repeats.")


def check(cfg) -> None:
    if cfg.baseline:
        raise ValueError("toy has no baseline; set baseline=false")


RECIPE = Recipe(name="toy", section="toy", config=ToyConfig, about="The toy recipe only.",
                ignores=("pretrain", "posttrain", "refine", "latent"), check=check)


@holds_run_folder
def run(cfg) -> dict:
    return {"repeats": cfg.toy.repeats}
'''

TOY_DRIVER = '''
import json, sys
from lara.adapters import recipes
recipes.RECIPES["toy"] = "toy_recipe"  # the one row, before the config is built from the table

from lara.adapters import cli, run_folder
from lara.adapters.config import load_recipe
from lara.errors import InputError

preset, out = sys.argv[1:]
seen = {"section": load_recipe(preset, ["toy.repeats=3"]).toy.repeats}
for override in ("toy.repeat=3", "baseline=true"):
    try:
        load_recipe(preset, [override])
    except InputError as error:
        seen[override] = str(error)
saved = load_recipe(preset).record()
changed = load_recipe(preset, ["pretrain.lam_steps=7", "toy.repeats=5"]).record()
seen["differences"] = sorted(run_folder.differences(saved, changed))
print(json.dumps(seen))
sys.exit(cli.main([preset, "toy.repeats=4", f"output_dir={out}"]))
'''


def test_a_new_recipe_is_its_module_and_one_row(tmp_path):
    """The toy recipe's module and its row: its section validates (with a "did you mean"), its check refuses what it
    cannot run, the run-folder check ignores what it declares it ignores, and `lara train` runs it."""
    (tmp_path / "toy_recipe.py").write_text(TOY_RECIPE)
    (tmp_path / "driver.py").write_text(TOY_DRIVER)
    preset = tmp_path / "toy.yaml"
    preset.write_text("recipe: toy\nmodel: {family: token_vla}\ndata: {paths: [data/x]}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(preset), str(tmp_path / "run")], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    seen, result = run.stdout.splitlines()
    seen = json.loads(seen)
    assert seen["section"] == 3
    assert "Did you mean 'toy.repeats'?" in seen["toy.repeat=3"]
    assert "toy has no baseline; set baseline=false" in seen["baseline=true"]
    assert seen["differences"] == ["toy.repeats"]  # pretrain.lam_steps: a section the toy ignores
    assert result == "{'repeats': '4'}"
