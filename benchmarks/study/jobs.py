"""Where each cell's job stands, from a file in its folder: `job.json`, written when the cell is submitted and by the
job running it, whatever the executor (a thread of the study, a submitit job on this machine or on SLURM).

    {"executor": "slurm", "job_id": "4242_1", "state": "running", "host": "node12", "pid": 3141,
     "log": ".../submitit/4242_1/4242_1_0_log.out", "time": "2026-12-07T10:00:00+00:00"}

`state` is submitted (queued, not started), running, requeued (preempted or timed out: it starts again from its
checkpoints), failed (with `error`, the last line of what failed, and `error_log`, the log holding it) or done.
`pid_start` (and a local job's `job_start`) tell a live process from a later one given the same pid.
`lara study --status` reads these files and each cell's cell.json (cells.py): a finished cell is done whatever its
job.json says; a cell with neither is pending. A cell recorded as running or submitted in a process of this machine
that no longer exists (a killed job, a stopped study) is failed. A study started by a commit without job.json has
pending, partly done and done cells only.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from lara.outputs import process_alive, replacing

from .cells import Cell, CellFailed, done, prepare, read_state, run_cell, stop_running, stopping

JOB_FILE = "job.json"
ACTIVE = ("submitted", "running")  # a job that holds the cell: another must not start it
_WRITE_LOCK = threading.Lock()


def read_job(cell: Cell) -> dict:
    path = cell.folder / JOB_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_job(cell: Cell, **fields) -> dict:
    """Update the cell's job.json with `fields` (and the time); a new job (another job_id) starts a new record."""
    with _WRITE_LOCK:
        record = read_job(cell)
        if "job_id" in fields and record.get("job_id") != fields["job_id"]:
            record = {}
        record.update(fields, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        for stale in ("error", "error_log") if fields.get("state") != "failed" else ():
            record.pop(stale, None)
        cell.folder.mkdir(parents=True, exist_ok=True)
        with replacing(cell.folder / JOB_FILE) as staging:
            staging.write_text(json.dumps(record, indent=1))
    return record


_ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception|Interrupt|Exit|Failed)\b|.*\berror: )")


def last_line(log: Path | None, error: bool = False) -> str | None:
    """The last non-empty line of a log (its end only), or None; with `error`, the last line that names an error
    (a traceback's exception, `lara ...: error: ...`) where there is one: progress bars come after it."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 16384))
            text = handle.read().decode(errors="replace")
    except (OSError, TypeError):
        return None
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)] if error else []
    return (errors or lines or [None])[-1]


def process_start(pid) -> str | None:
    """When a process of this machine started (clock ticks since boot, from /proc), or None where unknown: with its
    pid, it names the process even after the pid is reused."""
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, ValueError, TypeError, IndexError):
        return None


def _alive(pid, started: str | None) -> bool:
    """Whether the recorded process still runs: its pid exists and, where its start was recorded, started then."""
    try:
        pid = int(pid)
    except (ValueError, TypeError):
        return False
    return process_alive(pid) and (started is None or process_start(pid) in (None, started))


def _slurm_alive(job_id: str) -> bool:
    """Whether SLURM still lists the job (queued or running); False where squeue is missing or fails."""
    try:
        listed = subprocess.run(["squeue", "-h", "-o", "%T", "-j", job_id], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and bool(listed.stdout.strip())


def ended_unrecorded(record: dict) -> bool:
    """Whether a job recorded as submitted or running by a process of this machine has ended without saying how
    (killed, or its study stopped hard). Jobs of another machine (SLURM) are taken as recorded."""
    if record.get("state") not in ACTIVE or record.get("executor") == "slurm":
        return False
    if record.get("host") not in (None, socket.gethostname()):
        return False
    if record.get("state") == "running":
        return not _alive(record.get("pid"), record.get("pid_start"))
    return not _alive(record.get("job_id"), record.get("job_start"))  # a local job's id is its controller's pid


def holding_job(cell: Cell) -> dict | None:
    """The job that holds this cell now (submitted or running and not known to have ended), or None: what a new
    run of the study must not start beside. SLURM jobs are looked up with squeue."""
    record = read_job(cell)
    if record.get("state") not in ACTIVE or ended_unrecorded(record):
        return None
    if record.get("executor") == "slurm" and not _slurm_alive(str(record.get("job_id"))):
        return None
    return record


def _progress(cell: Cell, state: dict) -> str:
    """Where a started cell is: its last logged training step, or its evaluation."""
    if state.get("train_s") is not None:
        return "evaluating"
    for name, run in (("training", cell.run), ("first stage", cell.first)):
        metrics = run / "metrics.jsonl"
        line = last_line(metrics) if metrics.is_file() else None
        if line:
            try:
                return f"{name}, step {json.loads(line)['step']}"
            except (json.JSONDecodeError, KeyError, TypeError):
                return name
    return "starting"


def cell_status(cell: Cell) -> tuple[str, str]:
    """(state, detail) of one cell: done, running, pending or failed, from its cell.json and job.json."""
    state, record = read_state(cell), read_job(cell)
    job = f"job {record['job_id']} ({record.get('executor')})" if record.get("job_id") is not None else ""
    if done(cell, state):
        return "done", f"trained in {state['train_s']:.0f} s, evaluated in {state['eval_s']:.0f} s"
    if record.get("state") == "failed":
        return "failed", f"{job}: {record.get('error') or 'no error recorded'} (log: {record.get('error_log')})"
    if ended_unrecorded(record):
        return "failed", (f"{job}: its process ended without recording an outcome (killed?); the study's next run "
                          f"resumes it (log: {record.get('log')})")
    if record.get("state") == "running":
        return "running", f"{job} on {record.get('host')}, pid {record.get('pid')}: {_progress(cell, state)}"
    if record.get("state") in ("submitted", "requeued"):
        return "pending", f"{job} {record['state']}" + (f"; {_progress(cell, state)}" if state else "")
    if state.get("train_s") is not None:
        return "pending", "trained, not evaluated"
    progress = _progress(cell, state) if state else "starting"
    if progress == "starting":
        return "pending", "not started"
    return "pending", f"no job recorded (stopped, or run by an older commit): {progress}"


def status(cells: list[Cell]) -> list[str]:
    """`lara study --status`: one line per cell and a count of each state."""
    rows = [(cell.name, *cell_status(cell)) for cell in cells]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{name:<{width}}  {state:<8} {detail}" for name, state, detail in rows]
    counts = {s: sum(state == s for _, state, _ in rows) for s in ("done", "running", "pending", "failed")}
    lines.append(f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return lines


def execute(cell: Cell, eval_workers: int, threads: int, *, executor: str, job_id: str, say: Callable = print,
            replace_changed: bool = False, launcher: str | None = None, log: Path | None = None) -> dict:
    """Run one cell (`cells.run_cell`) as a job: recorded as running, then done or failed, in its job.json."""
    _, todo = prepare(cell, replace_changed)  # first: a cell retrained anew has its folder emptied here
    if todo == "skip":
        return run_cell(cell, eval_workers, threads, say, False, launcher)
    write_job(cell, executor=executor, job_id=job_id, state="running", host=socket.gethostname(), pid=os.getpid(),
              pid_start=process_start(os.getpid()), **({"log": str(log)} if log else {}))
    try:
        record = run_cell(cell, eval_workers, threads, say, False, launcher)
    except CellFailed as error:
        if not stopping():
            write_job(cell, state="failed", error=last_line(error.log, error=True) or str(error),
                      error_log=str(error.log or log))
        elif read_job(cell).get("state") == "running":  # not requeued: stopped for good
            write_job(cell, state="failed", error="stopped before it finished (its study or job was interrupted); "
                      "running the study again resumes it from its checkpoints", error_log=str(error.log or log))
        raise
    except Exception as error:
        write_job(cell, state="failed", error=f"{type(error).__name__}: {error}", error_log=str(log))
        raise
    write_job(cell, state="done")
    return record


class CellJob:
    """A cell as a submitit job: callable, and checkpointable in submitit's sense (a `checkpoint` method, as
    `submitit.helpers.Checkpointable` has): when SLURM preempts the job or its time runs out, submitit calls
    `checkpoint`, which ends the cell's running command and resubmits the same cell, which resumes from the
    checkpoints its training wrote. Its cell.json says what is done; nothing else is carried over."""

    def __init__(self, cell: Cell, eval_workers: int, threads: int, executor: str, launcher: str | None = None):
        self.cell, self.eval_workers, self.threads = cell, eval_workers, threads
        self.executor, self.launcher = executor, launcher

    def __call__(self) -> dict:
        import submitit

        environment = submitit.JobEnvironment()
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":  # LocalExecutor's "no GPU asked for": the cell's commands
            del os.environ["CUDA_VISIBLE_DEVICES"]  # see the machine as in a thread (robosuite's EGL fails on '')
        log = environment.paths.stdout
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["record"] = execute(self.cell, self.eval_workers, self.threads, executor=self.executor,
                                            job_id=environment.job_id, say=lambda line: print(line, flush=True),
                                            launcher=self.launcher, log=log)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
                outcome["error"] = error

        # the cell runs in a thread, so that submitit's signal handlers (preemption, timeout) and a cancel's SIGINT
        # reach this main thread while the cell's command runs, and can end that command
        worker = threading.Thread(target=work, name=self.cell.name, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=1.0)
        except KeyboardInterrupt:  # job.cancel() of a local job, or Ctrl-C
            write_job(self.cell, state="failed", error="interrupted by SIGINT (cancelled) before it finished; "
                      "running the study again resumes it from its checkpoints", error_log=str(log))
            stop_running()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["record"]

    def checkpoint(self) -> object:
        """Preempted or timed out: end the running command (its training resumes from its own checkpoints) and
        resubmit this cell."""
        from submitit.helpers import DelayedSubmission

        write_job(self.cell, state="requeued")
        stop_running()  # the cell's thread records nothing over 'requeued' (cells.stopping() is set)
        return DelayedSubmission(CellJob(self.cell, self.eval_workers, self.threads, self.executor, self.launcher))
