"""`lara study --executor local|slurm` (submitit): cells as real subprocess jobs give the thread executor's study,
a cancelled cell resumes from its checkpoint to the same losses and a preempted one requeues itself, `--status`
reads each cell's state from its folder, and the sbatch script carries the options given."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lara import cli as lara_cli
from lara.adapters import checkpoints
from lara.adapters.metrics import read_metrics
from lara.benchmarks.study import cli, executors
from lara.benchmarks.study.cells import launched, plan_cells
from lara.benchmarks.study.config import load_study
from lara.benchmarks.study.jobs import write_job
from test_study_config import options
from test_study_end_to_end import STEPS, TINY
from test_study_interruption import _cell_processes

SLURM = ["--executor", "slurm", "--dry-run", "--slurm-partition", "gpu", "--slurm-account", "robots",
         "--slurm-gpus-per-cell", "8", "--slurm-cpus-per-cell", "32", "--slurm-time", "1-12:00:00",
         "--slurm-setup", "module load cuda/12.4", "--slurm-setup", "source .venv/bin/activate",
         "--launcher", "accelerate launch --multi_gpu --num_processes 8", "--workers", "3"]


def test_the_sbatch_script_carries_the_slurm_options(tmp_path, capsys):
    assert cli.main(options(tmp_path, tmp_path / "out", *SLURM)) == 0
    script, _, tasks = capsys.readouterr().out.partition("\n# array task 0:")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for flag in ("--partition=gpu", "--account=robots", "--gpus-per-node=8", "--cpus-per-task=32",
                 "--time=2160", "--array=0-3%3", "--requeue", f"--signal=USR2@{executors.SIGNAL_DELAY_S}",
                 "--nodes=1", "--job-name=lara-study-out"):
        assert f"#SBATCH {flag}" in lines, flag
    out = (tmp_path / "out").resolve()
    assert f"#SBATCH --output={out}/submitit/%A_%a/%A_%a_0_log.out" in lines  # stderr joins it
    setup = lines.index("# setup")
    assert lines[setup + 1:setup + 3] == ["module load cuda/12.4", "source .venv/bin/activate"]
    assert lines[-1].startswith("srun ")
    assert f"{sys.executable} -u -m submitit.core._submit {out}/submitit/%j" in lines[-1]
    assert "lara/seed1 -> " in tasks and tasks.count("# array task") == 3  # 4 cells: 2 variants x 2 seeds
    assert "accelerate launch --multi_gpu --num_processes 8" in tasks  # each cell's training runs under it
    assert not (tmp_path / "out" / "submitit").exists() and not (tmp_path / "out" / "cells").exists()  # nothing ran


@pytest.mark.parametrize("extra, message", [
    (["--slurm-partition", "gpu"], "--slurm-partition is an option of --executor slurm"),
    (["--executor", "local", "--dry-run"], "--dry-run prints the sbatch script of --executor slurm"),
    (["--executor", "slurm", "--dry-run", "--slurm-time", "4h"], "--slurm-time '4h': expected a SLURM time"),
    (["--executor", "slurm", "--slurm-gpus-per-cell", "0"], "expected an integer >= 1, got '0'"),
    (["--executor", "slurm"], "--executor slurm: there is no `srun` on this machine"),  # none here
])
def test_bad_executor_options_end_on_one_line(tmp_path, capsys, extra, message):
    assert lara_cli.main(["study", *options(tmp_path, tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_without_submitit_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as where it is not installed: import raises ImportError
    assert lara_cli.main(["study", *options(tmp_path, tmp_path / "out"), "--executor", "slurm", "--dry-run"]) == 2
    assert "pip install 'lara[cluster]'" in capsys.readouterr().err


def test_status_reads_each_cells_state_from_its_folder(tmp_path, capsys):
    argv = options(tmp_path, tmp_path / "out", "--seeds", "0,1,2,3")
    cells = {c.name: c for c in plan_cells(load_study(cli.study_fields(cli.build_parser().parse_args(argv))))}
    finished = cells["lara/seed0"]  # trained and evaluated with these arguments: done
    (finished.eval).mkdir(parents=True)
    (finished.eval / "results.json").write_text("{}")
    (finished.folder / "cell.json").write_text(json.dumps({"train": finished.train_args, "eval": finished.eval_args,
                                                           "train_s": 12.0, "eval_s": 30.0}))
    write_job(cells["baseline/seed1"], executor="local", job_id="4242", state="running", host=socket.gethostname(),
              pid=os.getpid())  # a live process
    (cells["baseline/seed1"].run).mkdir(parents=True)
    (cells["baseline/seed1"].run / "metrics.jsonl").write_text('{"step": 7, "loss": 1.0}\n')
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_job(cells["lara/seed1"], executor="local", job_id="17", state="running", host=socket.gethostname(),
              pid=int(ended.stdout), log="out/submitit/17/17_0_log.out")  # its process is gone
    write_job(cells["baseline/seed2"], executor="slurm", job_id="900_4", state="failed",
              error="RuntimeError: CUDA out of memory", error_log="out/cells/baseline/seed2/train.log")
    write_job(cells["lara/seed2"], executor="slurm", job_id="900_5", state="submitted", host="login1")
    write_job(cells["baseline/seed3"], executor="thread", job_id="5", state="running", host=socket.gethostname(),
              pid=os.getpid(), pid_start="1")  # its pid now names another process
    (cells["lara/seed3"].run).mkdir(parents=True)  # started by an older commit: cell.json, no job.json
    (cells["lara/seed3"].folder / "cell.json").write_text(json.dumps({"train": cells["lara/seed3"].train_args,
                                                                      "eval": cells["lara/seed3"].eval_args}))
    (cells["lara/seed3"].run / "metrics.jsonl").write_text('{"step": 3, "loss": 1.0}\n')
    assert cli.main([*argv, "--status"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[:-1])
    assert lines["lara/seed0"].split() == ["done", "trained", "in", "12", "s,", "evaluated", "in", "30", "s"]
    assert lines["baseline/seed0"].split() == ["pending", "not", "started"]
    assert lines["baseline/seed1"].startswith(f"running  job 4242 (local) on {socket.gethostname()}, pid "
                                              f"{os.getpid()}: training, step 7")
    assert lines["lara/seed1"].startswith("failed   job 17 (local): its process ended without recording an outcome")
    assert lines["baseline/seed2"] == ("failed   job 900_4 (slurm): RuntimeError: CUDA out of memory "
                                       "(log: out/cells/baseline/seed2/train.log)")
    assert lines["lara/seed2"] == "pending  job 900_5 (slurm) submitted"
    assert lines["baseline/seed3"].startswith("failed   job 5 (thread): its process ended without recording")
    assert lines["lara/seed3"] == "pending  no job recorded (stopped, or run by an older commit): training, step 3"


def losses(run) -> list[dict]:
    """Every logged value but wall-clock throughput."""
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(run / "metrics.jsonl")]


def comparable(study_json, out) -> dict:
    """A study.json without what differs between two runs of one study: timings, load, its folder, command and how
    many cells ran at once."""
    summary = json.loads(study_json.read_text().replace(str(out), "OUT"))
    summary.pop("command")
    summary["settings"].pop("workers")
    for cell in summary["cells"]:
        for key in ("first_s", "train_s", "eval_s", "load"):
            cell.pop(key)
    return summary


def status_lines(argv, capsys) -> dict[str, str]:
    capsys.readouterr()
    assert cli.main([*argv, "--status"]) == 0
    return dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[:-1])


def start_jobs(argv: list[str]) -> tuple[dict, dict, threading.Thread]:
    """The study's cells submitted as local jobs by `executors.run_jobs` in a thread: its jobs by cell as they are
    submitted, its outcome once it ends, and the thread."""
    args = cli.build_parser().parse_args(argv)
    study = load_study(cli.study_fields(args))
    jobs, ran = {}, {}
    submitter = threading.Thread(target=lambda: ran.update(outcome=executors.run_jobs(
        "local", study, plan_cells(study), args, on_submit=lambda cell, job: jobs.update({cell.name: job}))))
    submitter.start()
    return jobs, ran, submitter


def wait_for_checkpoint(run: Path, submitter: threading.Thread) -> None:
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step_000004" / checkpoints.MANIFEST).exists():
        assert submitter.is_alive() and time.monotonic() < deadline, "the cell saved no checkpoint"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_local_executor_study_with_a_cancelled_and_a_preempted_cell_ends_as_the_thread_executors(
        miniature_study, tmp_path, capsys):
    """Two cells as local jobs, one after the other (--workers 1). The first is cancelled (SIGINT, what job.cancel()
    and `scancel` send): it fails, and the study started again resumes it from its checkpoint. The second gets
    submitit's preemption signal, SIGUSR2 to the job's process (what SLURM sends before it preempts a job or ends its
    time): its command ends, the job requeues itself (locally: its controller starts it again) and the cell resumes.
    Both end with the uninterrupted thread executor's losses, bit for bit, and the same study."""
    shared, reference, _ = miniature_study  # the thread executor's run, uninterrupted
    local = tmp_path / "local"
    argv = [*shared, "--workers", "1", "--out", str(local), "--executor", "local"]  # one cell at a time
    baseline, lara = (local / "cells" / variant / "seed0" for variant in ("baseline", "lara"))
    with executors.cancellable_local_jobs():  # as `lara study` does, SIGINT handled while jobs start: pytest
        # may ignore it (started in a script's background), and job.cancel() sends it
        jobs, ran, submitter = start_jobs(argv)
        wait_for_checkpoint(baseline / "run", submitter)
        job = jobs["baseline/seed0"]
        mid_run = status_lines(argv, capsys)  # a real job's state, from its cell folder
        job.cancel()
        assert mid_run["baseline/seed0"].startswith(f"running  job {job.job_id} (local) on {socket.gethostname()}")
        assert mid_run["lara/seed0"] == "pending  not started"  # --workers 1: not submitted yet
        while not job.done():
            time.sleep(0.1)
        time.sleep(1.0)  # the SIGTERM'd training exits
        assert not (baseline / "run" / "checkpoints" / f"step_{STEPS:06d}").exists(), "cancelled too late to test"
        assert _cell_processes(str(baseline / "run")) == []  # the cancel ended the cell's training too
        cancelled = max(r["step"] for r in read_metrics(baseline / "run" / "metrics.jsonl"))
        assert status_lines(argv, capsys)["baseline/seed0"].startswith(
            f"failed   job {job.job_id} (local): interrupted by SIGINT (cancelled) before it finished")

        wait_for_checkpoint(lara / "run", submitter)  # the other cell runs on, and is preempted
        os.kill(json.loads((lara / "job.json").read_text())["pid"], signal.SIGUSR2)  # the process running the cell
        submitter.join(timeout=600)
    records, failed = ran["outcome"]
    assert set(records) == {"lara/seed0"} and set(failed) == {"baseline/seed0"}  # requeued, not failed
    log = (lara / "job.log").read_text()
    assert "this job is preempted" in log and "Requeued job" in log and "Job completed successfully" in log
    assert (lara / "train.log").read_text().count("resumed from") == 1
    assert losses(lara / "run") == losses(reference / "cells" / "lara" / "seed0" / "run")  # bit for bit
    assert json.loads((lara / "job.json").read_text())["state"] == "done"

    assert cli.main(argv) == 0  # the study started again: the cancelled cell resumes, the finished one is skipped
    out = capsys.readouterr().out
    assert "[lara/seed0] done before: skipped" in out and "[baseline/seed0] submitted as job" in out
    assert "resumed from" in (baseline / "train.log").read_text()
    assert 4 <= cancelled < STEPS
    assert [r["step"] for r in losses(baseline / "run")] == list(range(1, STEPS + 1))
    assert losses(baseline / "run") == losses(reference / "cells" / "baseline" / "seed0" / "run")  # bit for bit
    assert comparable(local / "study.json", local) == comparable(reference / "study.json", reference)
    assert {name: line.split()[0] for name, line in status_lines(argv, capsys).items()} == {
        "baseline/seed0": "done", "lara/seed0": "done"}
    log = baseline / "job.log"
    assert log.is_symlink() and "Job completed successfully" in log.read_text()  # the resumed job's output
    assert json.loads((baseline / "job.json").read_text())["state"] == "done"


@pytest.mark.slow
def test_a_stopped_local_study_cancels_its_jobs_even_started_with_sigint_ignored(libero_object_demos, tmp_path):
    """A study started in a script's background inherits an ignored SIGINT, which its local jobs would inherit too,
    and SIGINT is how submitit cancels a local job: SIGTERM to the study still ends every job and its training."""
    out = tmp_path / "study"
    argv = ["--preset", "posttrain_token_vla", "--data", str(libero_object_demos), "--suite", "object", "--tasks",
            "0", "--seeds", "0", "--trials", "1", "--max-steps", "2", "--out", str(out), "--executor", "local",
            "--set", *[o for o in TINY if not o.startswith("train.steps")], "train.steps=100000"]
    study = subprocess.Popen([sys.executable, "-m", "lara.cli", "study", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    metrics = out / "cells" / "baseline" / "seed0" / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.is_file() and metrics.stat().st_size) and time.time() < deadline and study.poll() is None:
        time.sleep(0.5)  # until the first cell's training is under way
    assert study.poll() is None and _cell_processes(str(out / "cells")), "the first cell's training did not start"
    study.send_signal(signal.SIGTERM)
    _, err = study.communicate(timeout=120)
    assert study.returncode == 130 and "its local jobs were cancelled" in err
    time.sleep(1.0)
    assert _cell_processes(str(out)) == []  # no job, no training left
    assert "interrupted by SIGINT (cancelled)" in json.loads(
        (out / "cells" / "baseline" / "seed0" / "job.json").read_text())["error"]


def test_a_launcher_runs_the_cells_training_as_a_module_of_this_interpreter():
    train = ["train", "posttrain_token_vla", "train.steps=2", "output_dir=out/run"]
    assert launched("accelerate launch --multi_gpu --num_processes 8", train) == [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "8",
        "-m", "lara.adapters.cli", "posttrain_token_vla", "train.steps=2", "output_dir=out/run"]
    assert launched("torchrun --nproc-per-node 4", train)[:5] == [sys.executable, "-m", "torch.distributed.run",
                                                                  "--nproc-per-node", "4"]
    assert launched("srun --ntasks 2 python", train)[:4] == ["srun", "--ntasks", "2", "python"]  # as given
