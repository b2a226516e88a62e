"""A study stopped by a signal ends the commands of its cells; what can be checked is checked before any cell."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lara import cli as lara_cli
from test_study_config import options
from test_study_end_to_end import TINY


def test_a_variant_given_twice_is_refused(tmp_path, capsys):
    argv = ["study", *options(tmp_path, tmp_path / "out"), "--variant", "fsq=lara.lam.quantizer=fsq",
            "fsq=lara.lam.quantizer=vq", "--report-only"]
    assert lara_cli.main(argv) == 2
    assert "--variant fsq is given twice" in capsys.readouterr().err


def test_a_study_file_naming_a_variant_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(f"preset: posttrain_token_vla\ndata: [{tmp_path}]\nsuite: object\ntasks: [0]\nseeds: [0]\n"
                    f"trials: 1\nout: {tmp_path / 'out'}\nvariants:\n  fsq: [lara.lam.quantizer=fsq]\n"
                    "  fsq: [lara.lam.quantizer=vq]\n")
    assert lara_cli.main(["study", str(path), "--report-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable YAML study file" in err and "'fsq' is given twice" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--tasks", "0,12"], "tasks: 12 is not a task of libero_object; give indices 0-9"),
    (["--suite", "objects"], "Unknown LIBERO suite 'objects'"),
])
def test_a_wrong_suite_or_task_is_refused_before_any_cell_trains(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert lara_cli.main(["study", *options(tmp_path, out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not list(out.glob("cells/*/*/train.log"))  # nothing started


NICE = 5


def _cell_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line names `marker` (the study's folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if marker in cmdline and state != "Z":
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM])  # Ctrl-C (SIGINT) takes the same path: KeyboardInterrupt
def test_a_signal_stops_the_study_and_the_training_it_started(libero_object_demos, tmp_path, sig):
    out = tmp_path / "study"
    long = [o for o in TINY if not o.startswith(("train.steps", "posttrain.lam_warmup_steps"))]
    argv = ["--preset", "posttrain_token_vla", "--data", str(libero_object_demos), "--suite", "object",
            "--tasks", "0", "--seeds", "0,1", "--trials", "1", "--max-steps", "2", "--out", str(out),
            "--set", *long, "train.steps=100000", "posttrain.lam_warmup_steps=0"]
    study = subprocess.Popen([sys.executable, "-m", "lara.cli", "study", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             preexec_fn=lambda: os.nice(NICE))  # a study started under `nice`
    try:
        metrics = out / "cells" / "baseline" / "seed0" / "run" / "metrics.jsonl"
        deadline = time.time() + 240
        while not (metrics.is_file() and metrics.stat().st_size) and time.time() < deadline and study.poll() is None:
            time.sleep(0.5)  # until the first cell's training is under way
        assert study.poll() is None and metrics.is_file(), "the first cell's training did not start"
        training = [pid for pid in _cell_processes(str(out)) if pid != study.pid]
        assert training, "no training process found"
        for pid in training:  # the study stops each command's process group; Linux's autogroup scheduler weighs
            # sessions, so the command stays in the study's session, or `nice` on the study would not reach it
            assert os.getpgid(pid) != os.getpgid(study.pid) and os.getsid(pid) == os.getsid(study.pid)
            assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, study.pid) >= NICE
    except BaseException:  # a failed check stops the study too, or its 100000-step training outlives the test
        study.terminate()
        study.communicate(timeout=60)
        for pid in _cell_processes(str(out)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    study.send_signal(sig)
    _, err = study.communicate(timeout=60)
    assert study.returncode == 130 and "stopped; 1 running command(s) ended" in err
    time.sleep(0.5)
    assert _cell_processes(str(out)) == []  # nothing left holding the run folder
    assert not (out / "cells" / "lara").exists() or not list(out.glob("cells/lara/*/train.log"))  # none started after
