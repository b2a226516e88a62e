"""`lara <command>`: a user error ends on one line with exit 2, for every command; bugs keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lara import cli, errors
from lara.errors import InputError, MissingPath

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(capsys, prog: str) -> str:
    error = capsys.readouterr().err
    assert error.startswith(f"{prog}: error: ") and error.count("\n") == 1, error
    return error


@pytest.mark.parametrize("argv, prog, message", [
    (["train", "posttrain_tokenvla"], "lara train", "Did you mean 'posttrain_token_vla'?"),
    (["data", "generate", "--suite", "objects", "--out", "{tmp}/data"], "lara data generate",
     "Unknown LIBERO suite 'objects'"),
    (["serve", "--checkpoint", "{tmp}/nowhere"], "lara serve", "nowhere holds no config.json"),
    (["eval", "libero", "--policy", "scripted", "--suite", "object", "--trials", "0", "--out", "{tmp}/eval"],
     "lara eval", "argument --trials: expected an integer >= 1, got '0'"),
    (["train", "posttrain_token_vla", "data.paths=[data/a"], "lara train",
     "override 'data.paths=[data/a': the value is not valid YAML (expected ',' or ']', but got '<stream end>')"),
    (["train", "{tmp}/broken.yaml"], "lara train", "broken.yaml is not valid YAML at line 3, column 1"),
    (["eval", "libero", "--policy", "scripted", "--suite", "object", "--tasks", "0,1,0", "--out", "{tmp}/eval"],
     "lara eval", "--tasks '0,1,0': '0' is given twice; name each once"),
    (["data", "generate", "--suite", "object", "--tasks", "1,1", "--out", "{tmp}/data"], "lara data generate",
     "--tasks '1,1': task 1 is given twice; name each task once"),
    # lara serve and lara study parse through lara.cli.ArgumentParser too (issue 38): no usage block
    (["serve"], "lara serve", "the following arguments are required: --checkpoint"),
    (["serve", "--checkpoint", "{tmp}/vla", "--prot", "1"], "lara serve", "unrecognized arguments: --prot 1"),
    (["study", "--trails", "3"], "lara study", "unrecognized arguments: --trails"),
    (["study", "--out", "{tmp}/study", "--workers", "0"], "lara study",
     "argument --workers: expected an integer >= 1, got '0'"),
    # an allocation past the machine's memory: refused with the bytes it would need, not tried
    (["train", "posttrain_token_vla", "lara.lam.codebook_size=1000000000000", "output_dir={tmp}/run"], "lara train",
     "lara.lam: codebook_size=1000000000000 (x latent_dim 32: the codebook and its running averages) would need "
     "349.2 TiB, more than this machine's"),
    (["train", "posttrain_token_vla", "lara.lam.image_size=200000", "output_dir={tmp}/run"], "lara train",
     "lara.lam: image_size=200000 (patch_size 8: 625000000 tokens a frame, the LAM's weights and one sample's "
     "activations) would need"),
], ids=["train", "data", "serve", "eval", "override", "preset", "eval-twice", "generate-twice", "serve-required",
        "serve-unknown", "study-unknown", "study-range", "codebook-memory", "lam-image-memory"])
def test_every_command_ends_a_user_error_on_one_line_with_exit_2(tmp_path, capsys, argv, prog, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    broken = tmp_path / "broken.yaml"
    broken.write_text("recipe: posttrain\ntrain: {steps: [1\n")
    assert cli.main(argv) == 2
    assert message in one_line_error(capsys, prog)
    assert list(tmp_path.iterdir()) == [broken]  # refused before anything was written


def test_a_missing_data_path_is_one_line(tmp_path, capsys):
    assert cli.main(["train", "posttrain_token_vla", f"data.paths=[{tmp_path / 'nowhere'}]",
                     f"output_dir={tmp_path / 'run'}"]) == 2
    assert "nowhere: no such file or directory" in one_line_error(capsys, "lara train")


def test_help_of_lara_and_lara_eval(capsys):
    assert cli.main(["--help"]) == 0
    assert "evaluate a policy on a benchmark: libero or simpler" in capsys.readouterr().out
    assert cli.main(["eval", "--help"]) == 0
    assert "usage: lara eval {libero,simpler}" in capsys.readouterr().out
    assert cli.main(["eval"]) == 2


def test_eval_replaces_no_earlier_results_without_overwrite(tmp_path, capsys):
    (tmp_path / "results.json").write_text('{"earlier": true}')
    for bench in (["libero", "--suite", "object"], ["simpler"]):
        assert cli.main(["eval", *bench, "--policy", "scripted", "--out", str(tmp_path)]) == 2
        assert "results.json already exists; this evaluation would replace it: give --overwrite" in \
            one_line_error(capsys, "lara eval")
    assert (tmp_path / "results.json").read_text() == '{"earlier": true}'


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
        errors.run_command("lara x", buggy, [])
    with pytest.raises(ValueError):  # a builtin ValueError is a bug too: only lara.errors types are the user's
        errors.run_command("lara x", lambda argv: int("x"), [])


def test_a_cross_field_config_error_ends_lara_train_like_a_per_field_one(capsys):
    assert cli.main(["train", "posttrain_token_vla", "train.checkpoint_every=1", "train.log_every=10"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara train: error: invalid config from ") and "Traceback" not in error
    assert ": train: train.checkpoint_every (1) must be a multiple of train.log_every (10)" in error
    assert error.count("\n") == 1  # one line, as every user error


def test_the_process_exits_2_without_a_traceback_and_shows_one_with_lara_debug(tmp_path):
    command = [sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path / "nowhere")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LARA_DEBUG", None)
    plain = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "holds no config.json" in plain.stderr
    debug = subprocess.run(command, cwd=ROOT, env={**env, "LARA_DEBUG": "1"}, capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MissingPath" in debug.stderr


def test_an_existing_file_as_eval_out_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("mine")
    assert cli.main(["eval", "libero", "--policy", "scripted", "--suite", "object", "--out", str(tmp_path / "a_file")]) == 2
    assert f"--out {tmp_path / 'a_file'}: cannot write there" in one_line_error(capsys, "lara eval")
    assert (tmp_path / "a_file").read_text() == "mine"


def test_a_preset_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "latin.yaml").write_bytes("recipe: posttrain  # caf\xe9\n".encode("latin-1"))
    assert cli.main(["train", str(tmp_path / "latin.yaml")]) == 2
    assert "latin.yaml is not UTF-8 text" in one_line_error(capsys, "lara train")


def test_generate_help_documents_bench_and_no_positional(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "generate", "--help"])
    out = capsys.readouterr().out
    assert "--bench {libero,simpler}" in out and "{generate}" not in out


def test_ctrl_c_in_lara_train_is_one_line_and_says_how_to_resume(monkeypatch, capsys, tmp_path):
    from lara.adapters import posttrain

    def interrupted(cfg):
        raise KeyboardInterrupt  # what Ctrl-C raises in the training loop

    monkeypatch.setattr(posttrain, "run", interrupted)
    assert cli.main(["train", "posttrain_token_vla", f"output_dir={tmp_path / 'run'}"]) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "interrupted; re-run the same command to resume" in error


def test_serve_help_shows_the_default_port(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "(default: 8000)" in capsys.readouterr().out


def test_a_probe_image_size_past_the_machines_memory_is_refused_before_any_frame(tmp_path, capsys):
    import numpy as np

    from lara.config import memory_bytes
    from lara.data.libero_hdf5 import LiberoHDF5Writer

    with LiberoHDF5Writer(tmp_path / "open_the_drawer_demo.hdf5", language="open the drawer") as writer:
        writer.add_demo(actions=np.zeros((12, 7)), agentview_rgb=np.zeros((12, 16, 16, 3), np.uint8),
                        ee_states=np.zeros((12, 6)), gripper_states=np.zeros((12, 2)), joint_states=np.zeros((12, 7)))
    assert cli.main(["probe", "--data", str(tmp_path), "--frame-gap", "2", "--image-size", "100000"]) == 2
    error = one_line_error(capsys, "lara probe")
    assert error.startswith("lara probe: error: --image-size 100000 for 10 pairs would need 2.7 TiB, more than this "
                            "machine's ") and error.endswith("of memory; give a smaller --image-size (64 is the LAM's) "
                                                             "or a larger --stride\n"), error
    assert 10 * 2 * 3 * 100000 ** 2 * 5 > memory_bytes()
