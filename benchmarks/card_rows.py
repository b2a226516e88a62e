"""An evaluation of a run's export, as rows of that run's model card (RUN/final/README.md, lara/adapters/model_card.py).

    lara eval libero --policy checkpoint:RUN/final/vla --suite object --tasks 0,1 --trials 50 --out RUN/eval

adds one row per LIBERO suite (or one for the SIMPLER tasks): its tasks, k/n pooled over them with the Wilson
interval, the date, what makes the number other than the protocol's (trials on training init states, a changed
step budget or render size, a stand-in SIMPLER scene) and the command as a record names it (`lara.outputs.recorded`).
Any other policy (scripted, ws://, a checkpoint outside a run's final/ folder) has no card to add to.
"""

from __future__ import annotations

import os
import shlex
import warnings
from datetime import datetime, timezone
from pathlib import Path

from lara.adapters.model_card import add_evaluations, evaluation_row, run_final
from lara.benchmarks.libero.env import SUITE_MAX_STEPS
from lara.benchmarks.simpler.assets import BRIDGE_TASKS
from lara.benchmarks.study.stats import wilson_interval
from lara.outputs import recorded
from lara.policy import recorded_spec


def command(argv: list[str]) -> str:
    """`lara eval ARGV` with every path in it as a record names it (never the machine's absolute layout)."""
    def named(arg: str) -> str:
        if arg.startswith("checkpoint:"):
            return recorded_spec(arg)
        flag, sep, value = arg.partition("=")
        if sep and flag.startswith("--"):
            return f"{flag}={named(value)}"
        return recorded(arg) if os.path.isabs(arg) else arg

    return "lara eval " + shlex.join(named(arg) for arg in argv)


def _row(now: str, benchmark: str, suite: str, tasks: list[dict], notes: list[str], run: str, key: str) -> str:
    k, n = sum(t["successes"] for t in tasks), sum(t["trials"] for t in tasks)
    return evaluation_row(now, benchmark, suite, ", ".join(str(t[key]) for t in tasks), k, n, wilson_interval(k, n),
                          "; ".join(notes), run)


def libero_rows(results: dict, run: str, now: str) -> list[str]:
    protocol, rows = results["protocol"], []
    for suite in results["suites"]:
        tasks = [t for t in results["tasks"] if t["suite"] == suite]
        overlap = [str(o["task_id"]) for o in protocol.get("train_init_state_overlap") or [] if o["suite"] == suite]
        notes = [f"trials on training init states (tasks {', '.join(overlap)})"] if overlap else []
        if protocol["max_steps"][suite] != SUITE_MAX_STEPS[suite]:
            notes.append(f"{protocol['max_steps'][suite]} steps, not the protocol's {SUITE_MAX_STEPS[suite]}")
        if protocol.get("policy_image_size") and protocol["camera_size"] != protocol["policy_image_size"]:
            notes.append(f"rendered at {protocol['camera_size']} px, trained at {protocol['policy_image_size']} px")
        rows.append(_row(now, "LIBERO", suite, tasks, notes, run, "task_id"))
    return rows


def simpler_rows(results: dict, run: str, now: str) -> list[str]:
    notes = [] if results["simpler_scores"] else [f"stand-in scene for {', '.join(results['stand_in_stages'])}: not "
                                                  "SIMPLER scores"]
    if results.get("train_episode_overlap"):
        notes.append("episodes the training data started from")
    protocol = results["protocol"]
    budgets = {e: steps for e, steps in protocol["max_steps"].items() if steps != BRIDGE_TASKS[e].max_steps}
    notes += [f"{steps} steps for {e}, not the protocol's {BRIDGE_TASKS[e].max_steps}" for e, steps in budgets.items()]
    if protocol.get("policy_image_size") and protocol["image_size"] != protocol["policy_image_size"]:
        notes.append(f"images of {protocol['image_size']} px, trained at {protocol['policy_image_size']} px")
    seeds = results["seeds"]
    return [_row(now, "SIMPLER", f"Bridge (WidowX), {len(seeds)} seeds", results["tasks"], notes, run, "env_id")]


def add_to_card(policy: str, benchmark: str, results: dict, argv: list[str]) -> Path | None:
    """The rows of `results` added to the card of the run whose final/vla `policy` is; None when it is none.
    A card that cannot be written is warned about: the evaluation's results.json stands either way."""
    final = run_final(policy[len("checkpoint:"):]) if policy.startswith("checkpoint:") else None
    if final is None:
        return None
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    rows = (libero_rows if benchmark == "libero" else simpler_rows)(results, command(argv), now)
    try:
        return add_evaluations(final, rows)
    except OSError as error:
        warnings.warn(f"{final / 'README.md'}: the model card was not updated ({error.strerror or error}); the "
                      "results are in results.json", UserWarning, stacklevel=2)
        return None
