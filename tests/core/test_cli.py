"""`lara <command>`: a user error ends on one line with exit 2, for every command; bugs keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lara import cli
from lara.errors import InputError, MissingPath

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(capsys, prog: str) -> str:
    error = capsys.readouterr().err
    assert error.startswith(f"{prog}: error: ") and error.count("\n") == 1, error
    return error


@pytest.mark.parametrize("argv, prog, message", [
    (["train", "posttrain_tokenvla"], "lara train", "Did you mean 'posttrain_token_vla'?"),
    (["data", "generate", "--suite", "objects", "--out", "{tmp}/data"], "lara data", "Unknown LIBERO suite 'objects'"),
    (["serve", "--checkpoint", "{tmp}/nowhere"], "lara serve", "nowhere holds no config.json"),
    (["eval", "libero", "--policy", "scripted", "--suite", "object", "--trials", "0", "--out", "{tmp}/eval"],
     "lara eval", "--trials must be at least 1, got 0"),
], ids=["train", "data", "serve", "eval"])
def test_every_command_ends_a_user_error_on_one_line_with_exit_2(tmp_path, capsys, argv, prog, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    assert message in one_line_error(capsys, prog)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(MissingPath, match="holds no config.json"):
        cli.main(["serve", "--checkpoint", str(tmp_path), "--debug"])
    with pytest.raises(InputError, match="unknown preset"):
        cli.main(["--debug", "train", "nothing_like_a_preset"])
    monkeypatch.setenv("LARA_DEBUG", "1")
    with pytest.raises(InputError, match="unknown preset"):
        cli.main(["train", "nothing_like_a_preset"])


def test_a_bug_is_not_mistaken_for_a_user_error():
    def buggy(argv):
        return {}["missing"]  # a KeyError in the code, not in the input

    with pytest.raises(KeyError):
        cli.run_command("lara x", buggy, [])
    with pytest.raises(ValueError):  # a builtin ValueError is a bug too: only lara.errors types are the user's
        cli.run_command("lara x", lambda argv: int("x"), [])


def test_a_cross_field_config_error_ends_lara_train_like_a_per_field_one(capsys):
    assert cli.main(["train", "posttrain_token_vla", "train.checkpoint_every=1", "train.log_every=10"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: invalid config from ") and "Traceback" not in error
    assert "  train: train.checkpoint_every (1) must be a multiple of train.log_every (10)" in error


def test_the_process_exits_2_without_a_traceback_and_shows_one_with_lara_debug(tmp_path):
    command = [sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path / "nowhere")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LARA_DEBUG", None)
    plain = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "holds no config.json" in plain.stderr
    debug = subprocess.run(command, cwd=ROOT, env={**env, "LARA_DEBUG": "1"}, capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MissingPath" in debug.stderr
