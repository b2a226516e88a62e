"""`lara study --executor local|slurm`: each cell a submitit job, on this machine or on a SLURM cluster.

A cell is already an idempotent, resumable train-then-evaluate (cells.py), so a job is just that cell
(`jobs.CellJob`): `slurm` submits every cell left to run as one job array, `--workers` of them
running at once (the array's `%N`); `local` starts them as submitit `LocalExecutor` jobs, separate processes on
this machine, `--workers` at a time. A preempted or timed-out SLURM job is requeued (up to REQUEUES times after a
timeout; preemptions do not count) and its cell resumes from its own checkpoints. submitit's files (the pickled
cells, the sbatch script, each job's output) are under OUT/submitit/<job id>/; each cell's folder holds job.json
(jobs.py) and job.log, a link to its job's output, beside its train.log and eval.log. The submitting process
waits for the jobs and then writes the report; stopped, it cancels local jobs and leaves SLURM jobs running
(`--status` follows them, `--report-only` writes the report when they are done).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lara.errors import InputError

from .cells import Cell, CellFailed, done, prepare, read_cell, read_state
from .jobs import CellJob, process_start, read_job, write_job

EXECUTORS = ("thread", "local", "slurm")
REQUEUES = 20  # how many times a cell's SLURM job may be requeued after running out of time
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # a local job has no time limit of its own
SIGNAL_DELAY_S = 120  # SLURM warns a job this long before its time is up: the cell's command is ended, the job requeued
POLL_S = {"local": 2.0, "slurm": 30.0}
SLURM_TIME = "4:00:00"  # a cell job's time limit unless --slurm-time gives one


def require_submitit():
    """submitit, or the one-line error that says how to install it."""
    try:
        import submitit
    except ImportError:
        raise InputError("--executor local and slurm run cells through submitit, which is not installed here: "
                         "pip install 'lara[cluster]'") from None
    return submitit


def check_available(kind: str) -> None:
    """Before anything runs: submitit is installed, and SLURM's `srun` is here for `slurm`; else one InputError."""
    require_submitit()
    if kind == "slurm" and shutil.which("srun") is None:
        raise InputError(NO_SRUN)


NO_SRUN = ("--executor slurm: there is no `srun` on this machine; submit from a SLURM login node (--dry-run prints "
           "the sbatch script without submitting)")


@contextlib.contextmanager
def cancellable_local_jobs() -> Iterator[None]:
    """While local jobs start: SIGINT handled, not ignored. A process started in a script's background ignores SIGINT,
    and the local jobs it starts would inherit that, while SIGINT is how submitit cancels a local job (`job.cancel()`
    signals its controller). Only the main thread can set a handler; elsewhere nothing changes."""
    main = threading.current_thread() is threading.main_thread()
    ignored = main and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def slurm_minutes(text: str) -> int:
    """A SLURM time limit as whole minutes: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS,
    DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS (sbatch --time's forms)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise InputError(f"--slurm-time {text!r}: expected a SLURM time such as 240, 4:00:00 or 1-00:00:00")
    days, first, second, third = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + int(first) * 3600 + int(second or 0) * 60 + int(third or 0)
    elif third is not None:  # H:M:S
        seconds = int(first) * 3600 + int(second) * 60 + int(third)
    else:  # M, M:S
        seconds = int(first) * 60 + int(second or 0)
    if seconds < 60:
        raise InputError(f"--slurm-time {text!r}: give at least a minute")
    return -(-seconds // 60)


def slurm_parameters(study, options) -> dict:
    """The SlurmExecutor parameters of a study's job array, from the --slurm-* options."""
    parameters = {"job_name": f"lara-study-{study.out.resolve().name}",
                  "time": slurm_minutes(options.slurm_time or SLURM_TIME),
                  "array_parallelism": study.workers, "signal_delay_s": SIGNAL_DELAY_S, "stderr_to_stdout": True,
                  "additional_parameters": {"requeue": True}}  # submitit requeues with `scontrol requeue`
    optional = {"partition": options.slurm_partition, "account": options.slurm_account,
                "gpus_per_node": options.slurm_gpus_per_cell, "cpus_per_task": options.slurm_cpus_per_cell,
                "setup": options.slurm_setup}
    return {**parameters, **{key: value for key, value in optional.items() if value}}


def submitit_folder(study) -> Path:
    return study.out.resolve() / "submitit" / "%j"


def sbatch_script(study, options, count: int) -> str:
    """The sbatch script that `--executor slurm` submits for `count` cells (a job array when more than one), as
    submitit writes it (`submitit.slurm.slurm._make_sbatch_string`, what SlurmExecutor submits)."""
    require_submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    folder = submitit_folder(study)
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=count if count > 1 else None,
                               **slurm_parameters(study, options))


def make_executor(kind: str, study, options):
    submitit = require_submitit()
    folder = submitit_folder(study)
    if kind == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=REQUEUES)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, stderr_to_stdout=True)
        return executor
    try:
        executor = submitit.SlurmExecutor(folder, max_num_timeout=REQUEUES)
    except RuntimeError:
        raise InputError(NO_SRUN) from None
    executor.update_parameters(**slurm_parameters(study, options))
    return executor


def _record_submission(cell: Cell, kind: str, job) -> None:
    """job.json's first record of a job (unless the job already wrote its own) and job.log, a relative link to its
    output."""
    log = job.paths.stdout
    if read_job(cell).get("job_id") != job.job_id:
        start = {"job_start": process_start(job.job_id)} if kind == "local" else {}  # its id: its controller's pid
        write_job(cell, executor=kind, job_id=job.job_id, state="submitted", host=socket.gethostname(),
                  log=str(log), **start)
    link = cell.folder / "job.log"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(log, cell.folder))


def submit(kind: str, executor, cells: list[Cell], study, launcher: str | None = None) -> list:
    """Submit `cells` (prepared: their cell.json written) as jobs, a job array on SLURM; their job ids are recorded
    in their folders. The submitit jobs, in the cells' order."""
    functions = [CellJob(cell, study.eval_workers, study.threads, kind, launcher) for cell in cells]
    jobs = executor.submit_array(functions) if kind == "slurm" else [executor.submit(f) for f in functions]
    for cell, job in zip(cells, jobs):
        _record_submission(cell, kind, job)
    return jobs


def _outcome(cell: Cell, job) -> tuple[dict | None, str | None]:
    """A finished job's cell: (its record, None) when the cell is done, else (None, why)."""
    state = read_state(cell)
    if done(cell, state):
        return read_cell(cell, state), None
    record = read_job(cell)
    if record.get("state") != "failed":
        error = f"job {job.job_id} ended without finishing the cell (state {job.state})"
        write_job(cell, state="failed", error=error, error_log=record.get("log"))
        return None, f"{error}; see {record.get('log')}"
    return None, f"{record.get('error')} (log: {record.get('error_log')})"


def run_jobs(kind: str, study, cells: list[Cell], options, say: Callable[[str], None] = print,
             replace_changed: bool = False, on_submit: Callable[[Cell, object], None] | None = None
             ) -> tuple[dict, dict]:
    """Run the study's cells as submitit jobs and wait for them: ({cell: record} of the finished cells, {cell: why}
    of the failed ones). Finished cells are skipped, as by the thread executor. `on_submit(cell, job)` is called
    as each job is submitted. On KeyboardInterrupt local jobs are cancelled (their cells resume on the next run)
    and SLURM jobs keep running; the interrupt is raised on."""
    records, failed, waiting = {}, {}, []
    for cell in cells:
        state = read_state(cell)
        if done(cell, state):
            say(f"[{cell.name}] done before: skipped")
            records[cell.name] = read_cell(cell, state)
        else:
            waiting.append(cell)
    if not waiting:
        return records, failed
    executor = make_executor(kind, study, options)
    running: dict[str, tuple[Cell, object]] = {}

    def start(batch: list[Cell]) -> None:
        ready = []
        for cell in batch:  # prepared here, not in the job: what it deletes (--replace-changed), it deletes first
            try:
                prepare(cell, replace_changed)
                ready.append(cell)
            except CellFailed as error:
                failed[cell.name] = str(error)
                print(f"[{cell.name}] failed: {error}", file=sys.stderr, flush=True)
        for cell, job in zip(ready, submit(kind, executor, ready, study, options.launcher) if ready else []):
            running[cell.name] = (cell, job)
            say(f"[{cell.name}] submitted as job {job.job_id} ({kind}); its output: {cell.folder / 'job.log'}")
            if on_submit:
                on_submit(cell, job)

    if kind == "slurm":
        start(waiting)  # one array; SLURM runs --workers of it at once
        waiting = []
    try:
        while waiting or running:
            free = study.workers - len(running)
            if waiting and free > 0:
                start(waiting[:free])
                waiting = waiting[free:]
            for name, (cell, job) in list(running.items()):
                if job.done():
                    del running[name]
                    record, why = _outcome(cell, job)
                    if record is not None:
                        records[name] = record
                        say(f"[{name}] done (job {job.job_id})")
                    else:
                        failed[name] = why
                        print(f"[{name}] failed: {why}", file=sys.stderr, flush=True)
            if waiting or running:
                time.sleep(POLL_S[kind])
    except KeyboardInterrupt:
        if kind == "local":
            for _, job in running.values():
                job.cancel()
            deadline = time.time() + 60
            while any(not job.done() for _, job in running.values()) and time.time() < deadline:
                time.sleep(0.5)
        raise
    return records, failed
