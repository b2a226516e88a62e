"""How a simulated rollout runs a policy's action chunks: the ROS node's strategies (`lara/chunking.py`),
so that their effect on success is measured in simulation before a robot runs them.

    lara eval libero ... --execute-steps 8 --prefetch-steps 3 --latency-steps 2     # prefetch, 2 steps of latency
    lara eval libero ... --execute-steps 10 --ensemble 0.01                        # ACT: a query every step

A chunk asked for at env step t is computed on that step's observation and becomes available at step t + L
(`--latency-steps` L; 0: at once). On a step without an action (a synchronous rollout waits for each chunk, a
prefetching one only when a reply takes more than `--prefetch-steps`) the arm holds: zero motion, the gripper as
last commanded; such steps count in the episode's budget, as the time a waiting robot loses does. The defaults
(whole chunks, no latency, synchronous) are the protocol's plain open-loop rollout.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from lara.errors import InputError
from lara.chunking import ActionQueue, SimulatedLatency


@dataclass(frozen=True)
class Execution:
    """A checked chunk-execution strategy (see the module docstring and `lara/chunking.py`)."""

    execute_steps: Optional[int] = None  # actions of each chunk, counted from its observation, that may run (None: all)
    prefetch_steps: int = 0  # ask for the next chunk while this many actions remain (0: when none remain)
    ensemble_decay: Optional[float] = None  # ACT weights exp(-decay * i), i = 0 the oldest; None: replace the tail
    latency_steps: int = 0  # env steps between asking for a chunk and having it

    def schedule(self) -> SimulatedLatency:
        """A fresh schedule for one episode."""
        return SimulatedLatency(ActionQueue(self.execute_steps, self.ensemble_decay), self.prefetch_steps,
                                self.latency_steps)

    def record(self) -> dict:
        return asdict(self)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The execution flags `lara eval libero` and `lara eval simpler` share."""
    group = parser.add_argument_group("chunk execution (the ROS node's strategies, see lara.benchmarks.execution)")
    from lara.cli import integer, number

    group.add_argument("--execute-steps", type=integer(1), default=None, metavar="N",
                       help="actions of each chunk that may run, counted from its observation (default: the whole chunk)")
    group.add_argument("--prefetch-steps", type=integer(0), default=None, metavar="P",
                       help="ask for the next chunk while this many actions remain; its reply replaces the tail not yet "
                            "executed (default 0: when none remain, holding while it is computed; with --ensemble: "
                            "execute-steps - 1, a query every step as ACT)")
    group.add_argument("--ensemble", type=number(0), default=None, metavar="DECAY",
                       help="ACT temporal ensembling: average overlapping chunks' actions for a step with weights "
                            "exp(-DECAY * i), i = 0 the oldest prediction (ACT: 0.01)")
    group.add_argument("--latency-steps", type=integer(0), default=0, metavar="L",
                       help="simulated inference latency: a chunk asked for at env step t is computed on that step's "
                            "observation and arrives at step t + L (default 0)")


def flag_values(args: argparse.Namespace) -> dict:
    """The execution flags `add_flags` added, as the keywords of a benchmark's `evaluate`."""
    return dict(execute_steps=args.execute_steps, prefetch_steps=args.prefetch_steps, ensemble=args.ensemble,
                latency_steps=args.latency_steps)


def execution(execute_steps: Optional[int] = None, prefetch_steps: Optional[int] = None,
              ensemble: Optional[float] = None, latency_steps: int = 0) -> Execution:
    """The flags checked (InputError naming the flag and what it expects); `prefetch_steps` None is 0, or
    execute_steps - 1 with `ensemble` (ACT's query every step)."""
    if execute_steps is not None and execute_steps < 1:
        raise InputError(f"--execute-steps must be at least 1 (actions of each chunk that may run), got {execute_steps}")
    if latency_steps < 0:
        raise InputError(f"--latency-steps must be 0 or more env steps, got {latency_steps}")
    if ensemble is not None and not math.isfinite(ensemble):
        raise InputError(f"--ensemble takes a finite decay (ACT: 0.01), got {ensemble}")
    if prefetch_steps is None:
        if ensemble is not None and execute_steps is None:
            raise InputError("--ensemble averages overlapping chunks: give --execute-steps N (the actions of each chunk "
                             "to average; a query every step then, as ACT) or --prefetch-steps P (a query while P remain)")
        prefetch_steps = execute_steps - 1 if ensemble is not None else 0
    if prefetch_steps < 0:
        raise InputError(f"--prefetch-steps must be 0 or more, got {prefetch_steps}")
    if execute_steps is not None and prefetch_steps >= execute_steps:
        raise InputError(f"--prefetch-steps must be below --execute-steps {execute_steps} (execute-steps - 1 asks every "
                         f"step), got {prefetch_steps}")
    if ensemble is not None and prefetch_steps < 1:
        raise InputError("--ensemble averages overlapping chunks, which overlap only when the next one is asked for while "
                         "actions remain: --prefetch-steps 1 or more, below --execute-steps (then 2 or more)")
    return Execution(execute_steps, prefetch_steps, ensemble, latency_steps)


def hold_action(gripper: float) -> np.ndarray:
    """The action of a step without one: no motion, the gripper as last commanded (policy units, -1 open)."""
    return np.array([0, 0, 0, 0, 0, 0, gripper], dtype=np.float64)
