"""`lara study`: a with/without-LARA grid of training runs and LIBERO evaluations, and its statistics.

    lara study --preset posttrain_token_vla --data data/scripted_object --suite object --tasks 0,1 \\
        --seeds 0,1,2 --trials 20 --out runs/study --variant fsq=lara.lam.quantizer=fsq \\
        --variant detach=lara.align.detach_target=true --set train.steps=2000 --workers 2
    lara study benchmarks/study/configs/posttrain_token_vla.yaml --workers 2   # the same fields from a file

A cell is (variant, seed): `lara train PRESET <--set> <variant> data.paths=[DATA] train.seed=S` into
OUT/cells/<variant>/seed<S>/run, then `lara eval libero --policy checkpoint:<run>/final/vla` on the given
tasks and trials (trial i from init state i in every cell, rendered at the training data's image size) into
.../eval. 'baseline' (baseline=true) and 'lara' (the preset as it is) always run. A study file may give a
two-stage variant, {first: {preset, overrides}, overrides}: the first stage trains into <cell>/first and the
variant's run starts from its VLA (model.path=<cell>/first/final/vla; configs/latent_pretrain_token_vla.yaml:
latent-action pre-training, then post-training). Cells run at most --workers
at a time; a finished cell is skipped on a re-run, a half-done one resumes. OUT/study.json, study.md and
study.png hold each variant's success per seed, pooled with its Wilson 95 % interval and a 95 % prediction interval
for a new seed, and each variant's difference to the baseline (and each `comparisons` entry 'A - B' of a study
file) at the level of the training seed: the mean of the per-seed differences, a t-interval with seeds - 1 degrees
of freedom and an exact sign-flip p-value (benchmarks/study/stats.py); the hierarchical bootstrap is kept as a
secondary figure. All of it also per task. --report-only runs nothing and writes that report from the cells finished so far.

A study longer than a machine's life moves with --save-finished DIR, which runs nothing and copies the records of
every finished cell (no weights) to DIR/cells/; copied back into OUT/cells/ on another machine, those cells are
skipped there.

--executor says where cells run: threads of this process (thread, the default), or one submitit job per cell, on
this machine (local) or on SLURM (slurm: one job array, --workers of it at once, requeued on preemption or timeout,
each cell resuming from its checkpoints; pip install 'lara[cluster]'):

    lara study STUDY.yaml --executor slurm --slurm-partition gpu --slurm-gpus-per-cell 8 --slurm-time 12:00:00 \\
        --slurm-setup 'source .venv/bin/activate' --launcher 'accelerate launch --multi_gpu --num_processes 8' \\
        --workers 4
    lara study STUDY.yaml --status            # each cell: pending, running (job id), done, failed (error, log)

Each cell's folder holds job.json (its job's id and state) and job.log (its job's output; benchmarks/study/jobs.py).
--dry-run prints the sbatch script without submitting. The submitting process waits for the jobs and writes the
report; stopped, it cancels local jobs and leaves SLURM ones running (--report-only writes the report later).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shlex
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lara.errors import InputError
from lara.outputs import check_link

from . import executors, report, stats
from .cells import (CellFailed, changes, done, plan_cells, read_cell, read_state, record_files, source_commit,
                    stop_running)
from .config import load_study, read_study_file, split_top_level
from .jobs import execute, holding_job, status


def build_parser() -> argparse.ArgumentParser:
    from lara.cli import ArgumentParser, integer  # a bad flag: one line and exit 2, as every lara command

    p = ArgumentParser(prog="lara study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_file", nargs="?", type=Path, help="a YAML study file (options given beside it override it)")
    p.add_argument("--preset", help="the `lara train` preset, e.g. posttrain_token_vla")
    p.add_argument("--data", help="comma-separated demonstration files or folders")
    p.add_argument("--suite", help="LIBERO suite of the evaluation: spatial, object, goal, 10, 90")
    p.add_argument("--tasks", help="comma-separated task indices (or names)")
    p.add_argument("--seeds", help="comma-separated training seeds, e.g. 0,1,2")
    p.add_argument("--trials", type=integer(1), help="evaluation trials per task (trial i from init state i)")
    p.add_argument("--out", type=Path, help="study folder")
    p.add_argument("--variant", action="extend", nargs="+", metavar="NAME=key=value,...",
                   help="an extra variant: a name and its recipe overrides, e.g. fsq=lara.lam.quantizer=fsq")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", metavar="key=value",
                   help="recipe overrides shared by every variant, e.g. train.steps=2000")
    p.add_argument("--max-steps", type=integer(1), help="evaluation step budget per episode (debugging)")
    p.add_argument("--workers", type=integer(1),
                   help="cells running at once (default 1): threads, local jobs, or the SLURM job array's %%N")
    p.add_argument("--eval-workers", type=integer(1), help="worker processes of each evaluation (default 1)")
    p.add_argument("--threads", type=integer(1),
                   help="OMP/MKL threads per training process and eval worker (default 1)")
    p.add_argument("--replace-changed", action="store_true",
                   help="retrain (re-evaluate) cells of --out recorded with other training (evaluation) arguments; "
                        "without it such a study is refused before anything runs")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write study.json, study.md and study.png from the cells of --out finished so far "
                        "(a running or interrupted study's figures); the cells not finished are named")
    p.add_argument("--save-finished", type=Path, metavar="DIR",
                   help="run nothing: copy the records of every finished cell (cell.json, results, each phase's "
                        "metrics and data split; no weights) to DIR/cells/, to carry a study to another machine: "
                        "copied back into --out's cells/ there, those cells are skipped")
    p.add_argument("--executor", choices=executors.EXECUTORS, default="thread",
                   help="where cells run: threads of this process (thread, the default), or one submitit job per "
                        "cell on this machine (local) or on SLURM (slurm: one job array); local and slurm need "
                        "pip install 'lara[cluster]'")
    p.add_argument("--status", action="store_true",
                   help="run nothing: print each cell's state (pending; running, with its job id; done; failed, with "
                        "the last error line and its log) from the files in its folder, and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="with --executor slurm: print the sbatch script of the cells left to run (one job array) "
                        "without submitting it")
    p.add_argument("--launcher", metavar="COMMAND",
                   help="run each cell's training under this launcher, e.g. 'accelerate launch --multi_gpu "
                        "--num_processes 8' or 'torchrun --nproc-per-node 8' (multi-GPU cells); recorded in cell.json")
    p.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition of the cells' jobs (sbatch --partition)")
    p.add_argument("--slurm-account", metavar="NAME", help="SLURM account charged (sbatch --account)")
    p.add_argument("--slurm-gpus-per-cell", type=integer(1), metavar="N",
                   help="GPUs of each cell's job (sbatch --gpus-per-node; one node per cell)")
    p.add_argument("--slurm-cpus-per-cell", type=integer(1), metavar="N",
                   help="CPUs of each cell's job (sbatch --cpus-per-task)")
    p.add_argument("--slurm-time", metavar="TIME",
                   help="time limit of each cell's job (sbatch --time: 240, 4:00:00, 1-00:00:00; default 4:00:00); "
                        "a cell that runs out of it is requeued and resumes from its checkpoints")
    p.add_argument("--slurm-setup", action="append", metavar="LINE",
                   help="a shell line the job runs before the cell (repeatable), e.g. 'module load cuda' or "
                        "'source .venv/bin/activate'")
    p.add_argument("--rewrite-report", type=Path, metavar="STUDY_JSON",
                   help="run nothing: recompute the statistics of a written study report (e.g. a committed "
                        "results/study_*.json, whose cell folders are gone) from the cells it holds, and "
                        "rewrite it and its .md and .png beside it in place")
    return p


def rewrite_report(path: Path) -> int:
    """--rewrite-report: the report of a study.json recomputed from the cells it holds (their per-episode records),
    with today's statistics; the file and its .md and .png are rewritten. `settings.report` says which code did it."""
    if not path.is_file():
        raise InputError(f"--rewrite-report {path}: no such file; give a study report (study.json) written by "
                         "`lara study`")
    try:
        old = json.loads(path.read_text())
        command, settings, records, variants = old["command"], old["settings"], old["cells"], list(old["variants"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"--rewrite-report {path}: not a study report written by `lara study` ({error})") from None
    unfinished = (settings.get("report") or {}).get("unfinished", [])
    settings = {**settings, **analysis(), "report": {**source_commit(), "report_only": True, "unfinished": unfinished,
                                       "rewritten_from_cells_of": path.name}}
    summary = report.summarise(command, settings, records, variants, settings.get("comparisons", []))
    report.write(summary, path.parent, path.stem)
    print(report.markdown(summary))
    return 0


def save_finished(study, cells: list, folder: Path) -> int:
    """--save-finished: copy each finished cell's records to FOLDER/cells/<variant>/seed<S>/, as they lie under
    --out. A record already there is left if equal and refused if not: nothing saved earlier is replaced."""
    finished_cells = [cell for cell in cells if done(cell, read_state(cell))]
    pairs = [(path, folder / path.relative_to(study.out)) for cell in finished_cells for path in record_files(cell)]
    clash = [str(target) for source, target in pairs
             if target.exists() and not filecmp.cmp(source, target, shallow=False)]
    if clash:
        raise InputError(f"{clash[0]} exists with other contents ({len(clash)} such records): --save-finished "
                         "replaces nothing; give another folder, or move those records aside")
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    names = ", ".join(cell.name for cell in finished_cells) or "none"
    print(f"{len(finished_cells)} of {len(cells)} cells finished, their records saved in {folder / 'cells'}: {names}")
    return 0


def analysis() -> dict:
    """How a study's differences are computed, as study.json's settings say it: the primary figure and the
    secondary one."""
    return {"primary": {"method": "seed_t", "unit": "training seed",
                        "statistic": "per seed, the variant's success minus the other's over the same (task, trial) "
                                     "episodes; their mean, a 95 % t-interval with seeds - 1 degrees of freedom, "
                                     "and a two-sided sign-flip permutation p-value (exact up to "
                                     f"{stats.EXACT_SIGNFLIP_SEEDS} seeds)",
                        "prediction95": "per variant: mean ± t · sd · sqrt(1 + 1/S) of its seeds' success rates"},
            "bootstrap": {"role": "secondary figure: too narrow with few seeds",
                          "resamples": stats.RESAMPLES, "rng_seed": stats.BOOTSTRAP_SEED,
                          "resampled": "training seeds with replacement, then within each drawn seed its "
                                       "(task, trial) episodes with replacement; percentile interval"}}


def study_settings(study, source: dict) -> dict:
    """study.json's `settings`: the study's fields, the code its cells ran (`source`) and how it is analysed."""
    return {**study.model_dump(mode="json"), "source": source,
            "init_states": "trial i starts from the benchmark's init state i, in every cell", **analysis()}


def report_only(study, cells: list, command: str) -> int:
    """--report-only: the report of the cells finished so far, with this study's arguments; nothing runs.
    `command` is the study's own (what runs its cells), and `settings.report` says how this report was written.

    The code that ran the cells is the `source` of an earlier study.json in --out (a study writes one when a run
    of it ends), else the one commit every finished cell recorded for its phases, else unknown (None); the code
    writing this report is `settings.report.commit`."""
    records, unfinished = [], []
    for cell in cells:
        state = read_state(cell)
        if done(cell, state):
            records.append(read_cell(cell, state))
        else:
            unfinished.append(cell.name)
    if not records:
        raise InputError(f"{study.out} holds no finished cell of this study yet, so there is nothing to report; "
                         "run the study without --report-only first")
    earlier = study.out / "study.json"
    source = json.loads(earlier.read_text())["settings"].get("source") if earlier.is_file() else None
    # the code of each phase (its versions and machine are reported per cell: cells may run on several machines)
    recorded = [{"commit": s.get("commit"), "dirty": s.get("dirty")}
                for r in records for s in r["source"].values() if s]
    if source is None and recorded and all(s == recorded[0] for s in recorded):  # every phase ran the same code
        source = recorded[0]
    settings = study_settings(study, source or {"commit": None, "dirty": None})
    settings["report"] = {**source_commit(), "report_only": True, "unfinished": unfinished}
    summary = report.summarise(command, settings, records, list(study.all_variants()), study.comparisons)
    report.write(summary, study.out)
    print(report.markdown(summary))
    if unfinished:
        print(f"lara study: {len(unfinished)} of {len(cells)} cells not finished yet ({', '.join(unfinished)}); "
              "the report leaves them out.", file=sys.stderr)
    return 0


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def study_fields(args: argparse.Namespace) -> dict:
    """The study's raw fields: the study file's, then the options given."""
    raw = read_study_file(args.study_file) if args.study_file else {}
    for name in ("preset", "suite", "trials", "out", "max_steps", "workers", "eval_workers", "threads"):
        if getattr(args, name) is not None:
            raw[name] = getattr(args, name)
    if args.data is not None:
        raw["data"] = _comma_list(args.data)
    if args.tasks is not None:
        raw["tasks"] = [int(t) if t.isdigit() else t for t in _comma_list(args.tasks)]
    if args.seeds is not None:
        raw["seeds"] = _comma_list(args.seeds)
    if args.overrides is not None:
        raw["overrides"] = [*raw.get("overrides", []), *args.overrides]
    given = set()
    for spec in args.variant or []:
        name, sep, overrides = spec.partition("=")
        if not sep or not name:
            raise InputError(f"--variant {spec!r} must look like NAME=key=value[,key=value], "
                             "e.g. fsq=lara.lam.quantizer=fsq")
        if name in given:
            raise InputError(f"--variant {name} is given twice; give each variant once, with all its overrides "
                             "(NAME=key=value,key=value)")
        given.add(name)
        raw.setdefault("variants", {})[name] = split_top_level(overrides)
    return raw


def check_evaluation(study) -> None:
    """The evaluation's suite and tasks exist (read from the benchmark, no env is built); else one InputError."""
    from lara.benchmarks.libero.env import resolve_suite, task_names

    suite = resolve_suite(study.suite)  # an unknown suite: one line naming the valid ones
    names = task_names(suite)
    for task in study.tasks:
        if not (isinstance(task, int) and 0 <= task < len(names)) and task not in names:
            raise InputError(f"tasks: {task!r} is not a task of {suite}; give indices 0-{len(names) - 1} or task "
                             "names (`lara eval libero --help` lists them)")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


SLURM_OPTIONS = ("slurm_partition", "slurm_account", "slurm_gpus_per_cell", "slurm_cpus_per_cell", "slurm_time",
                 "slurm_setup")


def check_executor_options(args: argparse.Namespace) -> None:
    """--slurm-* and --dry-run go with --executor slurm; else one InputError."""
    if args.executor != "slurm":
        given = [name for name in SLURM_OPTIONS if getattr(args, name) is not None]
        if given:
            raise InputError(f"--{given[0].replace('_', '-')} is an option of --executor slurm (given: --executor "
                             f"{args.executor}); add --executor slurm or leave it out")
        if args.dry_run:
            raise InputError(f"--dry-run prints the sbatch script of --executor slurm (given: --executor "
                             f"{args.executor}); add --executor slurm")
    if args.executor == "slurm":
        executors.slurm_minutes(args.slurm_time or executors.SLURM_TIME)  # a malformed time: one line, now


def dry_run(study, cells: list, args: argparse.Namespace) -> int:
    """--dry-run: the sbatch script of the cells not finished yet, and which array task runs which cell."""
    left = [cell for cell in cells if not done(cell, read_state(cell))]
    if not left:
        print(f"every cell of {study.out} is done: nothing to submit")
        return 0
    print(executors.sbatch_script(study, args, len(left)))
    for index, cell in enumerate(left):
        print(f"# array task {index}: {cell.name} -> {cell.folder}")
    if args.launcher:
        print(f"# each cell's training runs under: {args.launcher}")
    return 0


RESUME = ("Re-run the same command to resume: finished cells are skipped, half-done ones resume from their "
          "checkpoints.")


def run_threads(study, cells: list, args: argparse.Namespace) -> tuple[dict, dict] | None:
    """--executor thread: cells run at most --workers at a time in threads of this process (None: stopped)."""
    done_cells, failed = {}, {}
    pool = ThreadPoolExecutor(study.workers)  # each cell's work runs in its own subprocesses
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops the study as Ctrl-C does
    try:
        futures = [(cell, pool.submit(execute, cell, study.eval_workers, study.threads, executor="thread",
                                      job_id=str(os.getpid()), say=lambda line: print(line, flush=True),
                                      replace_changed=args.replace_changed, launcher=args.launcher))
                   for cell in cells]
        for cell, future in futures:
            try:
                done_cells[cell.name] = future.result()
            except CellFailed as error:
                failed[cell.name] = str(error)
                print(f"[{cell.name}] failed: {error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)  # no further cell starts
        stopped = stop_running()
        pool.shutdown(wait=True)
        print(f"lara study: stopped; {stopped} running command(s) ended. {RESUME}", file=sys.stderr, flush=True)
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.shutdown(wait=True)
    return done_cells, failed


def run_submitit(study, cells: list, args: argparse.Namespace) -> tuple[dict, dict] | None:
    """--executor local|slurm: one submitit job per cell (executors.py), waited for here (None: stopped)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with executors.cancellable_local_jobs():
            return executors.run_jobs(args.executor, study, cells, args, lambda line: print(line, flush=True),
                                      args.replace_changed)
    except KeyboardInterrupt:
        if args.executor == "local":
            print(f"lara study: stopped; its local jobs were cancelled. {RESUME}", file=sys.stderr, flush=True)
        else:
            print(f"lara study: stopped waiting; the SLURM jobs keep running. `lara study ... --status` follows them "
                  f"and `--report-only` writes the report of {study.out} when they are done.", file=sys.stderr,
                  flush=True)
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.rewrite_report is not None:
        return rewrite_report(args.rewrite_report)
    check_executor_options(args)
    study = load_study(study_fields(args))  # a bad study raises InputError: one line from the dispatcher, exit 2
    check_link(study.out, "--out", folder=True)  # a symbolic link as the study folder: refused before anything
    if args.save_finished is not None:
        check_link(args.save_finished, "--save-finished", folder=True)
    cells = plan_cells(study)
    if args.save_finished is not None:
        return save_finished(study, cells, args.save_finished)
    if args.status:
        print("\n".join(status(cells)))
        return 0
    if args.report_only:
        return report_only(study, cells, "lara study " + shlex.join(a for a in argv if a != "--report-only"))
    if args.dry_run:
        return dry_run(study, cells, args)
    if args.executor != "thread":
        executors.check_available(args.executor)
    check_evaluation(study)  # before any cell trains: a wrong suite or task would be found only at its evaluation
    changed = {cell.name: what[0] for cell in cells if (what := changes(cell))}
    if changed and not args.replace_changed:
        listed = ", ".join(f"{name} ({what})" for name, what in changed.items())
        raise InputError(f"{study.out} holds cells run with other arguments: {listed}; give the study a new --out, "
                         "or pass --replace-changed to redo them (their earlier runs are deleted)")
    held = {cell.name: job for cell in cells if not done(cell, read_state(cell)) and (job := holding_job(cell))}
    if held:
        listed = ", ".join(f"{name} (job {job['job_id']}, {job['executor']}, {job['state']})"
                           for name, job in held.items())
        raise InputError(f"{study.out} has cells held by jobs not ended: {listed}; wait for them (`--status` "
                         "follows them) or end them, then run the study again")
    command = "lara study " + shlex.join(argv)
    print(f"{command}\n{len(cells)} cells ({len(study.all_variants())} variants x {len(study.seeds)} seeds), "
          f"{study.workers} at a time ({args.executor} executor) -> {study.out}", flush=True)
    ran = (run_threads if args.executor == "thread" else run_submitit)(study, cells, args)
    if ran is None:
        return 130
    done_cells, failed = ran
    records = [done_cells[cell.name] for cell in cells if cell.name in done_cells]
    if records:
        summary = report.summarise(command, study_settings(study, source_commit()), records,
                                   list(study.all_variants()), study.comparisons)
        report.write(summary, study.out)
        print("\n" + report.markdown(summary))
    if failed:
        print(f"lara study: {len(failed)} of {len(cells)} cells failed ({', '.join(failed)}); "
              "the results above leave them out. Re-run the same command to retry them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from lara.errors import run_command

    raise SystemExit(run_command("lara study", main, sys.argv[1:]))
