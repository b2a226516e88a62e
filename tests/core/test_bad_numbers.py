"""Every numeric command-line flag and every numeric config field, given 0, a negative number, NaN, inf or a wrong
type, ends on one line (`lara <command>: error: ...`, exit 2) or is a value it accepts; never a traceback
(issue 38, finding 9). Flags declare their range in their argparse type (lara.cli.integer / number), so a bad
one is refused while parsing, before any work; config fields are walked through `load_recipe`."""

from __future__ import annotations

import math
import typing
from importlib import import_module

import pytest

pytest.importorskip("mujoco", reason="the walked flags include LIBERO's commands (the libero extra); "
                    ".venv-tf440 has only the core")
from pydantic import BaseModel  # noqa: E402

from lara import cli  # noqa: E402
from lara.adapters.config import RecipeConfig, load_recipe  # noqa: E402
from lara.benchmarks.table import BENCHMARKS, DEFAULT  # noqa: E402
from lara.errors import InputError  # noqa: E402

BAD = ["0", "-1", "nan", "inf", "-inf", "x", "1.5"]

# (the argv before the flag, the module and function that build the command's parser, and its arguments);
# `lara eval` and `lara data generate` once per benchmark of the table
PARSERS = {
    "data inspect": (["data", "inspect"], "lara.data.inspect", "build_parser"),
    "data videos": (["data", "videos"], "lara.data.video", "build_parser"),
    "data convert": (["data", "convert"], "lara.data.convert", "build_parser"),
    **{" ".join(["data", "generate", *bench]): (["data", "generate", *bench], "lara.benchmarks.generate", "build_parser",
                                                 name)
       for name, bench in ((name, [] if name == DEFAULT else ["--bench", name]) for name in BENCHMARKS)},
    "demo": (["demo"], "lara.benchmarks.demo", "build_parser"),
    **{f"eval {name}": (["eval", name], "lara.benchmarks.cli", "build_parser", name) for name in BENCHMARKS},
    "probe": (["probe"], "lara.benchmarks.probes.probe", "build_parser"),
    "serve": (["serve"], "lara.real_robot.server", "build_parser"),
    "study": (["study"], "lara.benchmarks.study.cli", "build_parser"),
}


def _accepts(bounds, text: str) -> bool:
    kind, low, high, above = bounds
    try:
        value = kind(text)
    except ValueError:
        return False
    return (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
            and (above is None or value > above))


def flag_cases():
    cases = []
    for name, (argv, module, function, *arguments) in PARSERS.items():
        parser = getattr(import_module(module), function)(*arguments)
        for action in parser._actions:
            if not action.option_strings or action.type is None:
                continue
            assert action.type not in (int, float), f"lara {name} {action.option_strings[0]}: a plain {action.type}; " \
                "declare its range with lara.cli.integer / number"
            bounds = getattr(action.type, "bounds", None)
            if bounds is None:
                continue
            for value in BAD:
                if not _accepts(bounds, value):
                    cases.append(pytest.param(argv, action.option_strings[0], value, id=f"{name} {action.option_strings[0]} {value}"))
    return cases


FLAG_CASES = flag_cases()


@pytest.mark.parametrize("argv, flag, value", FLAG_CASES)
def test_a_bad_number_for_a_flag_is_one_line_and_exit_2(capsys, argv, flag, value):
    assert cli.main([*argv, f"{flag}={value}"]) == 2
    error = capsys.readouterr().err
    prog = "lara " + " ".join(argv[:2] if argv[0] == "data" else argv[:1])
    assert error.startswith(f"{prog}: error: argument {flag}: expected ") and error.count("\n") == 1, error
    assert f"got '{value}'" in error


def numeric_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of every int/float field of a config tree (bools and free-form dicts left out)."""
    names = []
    for name, field in model.model_fields.items():
        kinds = [a for a in (typing.get_args(field.annotation) or (field.annotation,))]
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if nested:
            names += numeric_fields(nested[0], f"{prefix}{name}.")
        elif any(k in (int, float) for k in kinds) or typing.get_origin(field.annotation) is tuple:
            names.append(f"{prefix}{name}")
    return names


FIELDS = numeric_fields(RecipeConfig)
TOKEN_VLA_BUILD = ["width", "layers", "image_size", "vocab_size", "patch_size", "chunk_size", "n_action_bins",
                   "action_dim", "proprio_dim", "image_shift"]
CONFIG_CASES = [(f, v) for f in FIELDS + [f"model.build.{k}" for k in TOKEN_VLA_BUILD]
                for v in ("0", "-1", ".nan", ".inf", "x")]


@pytest.mark.parametrize("field, value", CONFIG_CASES, ids=[f"{f}={v}" for f, v in CONFIG_CASES])
def test_a_bad_number_for_a_config_field_is_one_line_or_accepted(field, value):
    """Either a value the field allows (e.g. train.warmup_steps=0), or an InputError on one line naming the field;
    a finite bound is never NaN or inf."""
    override = f"{field}=[{value}, 0.9]" if field == "train.betas" else f"{field}={value}"
    try:
        cfg = load_recipe("posttrain_token_vla", [override])
    except InputError as error:
        assert "\n" not in str(error) and field.split(".")[-1] in str(error), str(error)
        return
    assert value in ("0", "-1") or field.startswith("model.build"), f"{override} was accepted"
    number = cfg
    for key in field.split("."):
        number = number[key] if isinstance(number, dict) else getattr(number, key)
    assert not isinstance(number, float) or math.isfinite(number)


def test_the_walk_covers_every_command_and_many_cases():
    assert len(FIELDS) >= 56 and len(FLAG_CASES) >= 400  # 56 fields and 410 flag cases when written
    assert {"train.lr", "train.betas", "train.seed", "lara.lam_weight", "data.frame_gap_s"} <= set(FIELDS)
