"""A policy whose actions encode the step they are meant for, served for the chunk-execution tests:

    python tests/real_robot/index_policy.py PORT [--horizon 10] [--delay-ms 120] [--late-every 0] [--late-ms 500]
        [--offset]

Action i of a chunk computed on the observation of step s (the `timestep` the ROS node sends) rotates by
((s + i) // 100, 0, (s + i) % 100) x UNIT policy units and does not translate, so the executed actions a node
records (`decode`) show any step repeated or skipped, and the arm stays where it is. Every `late_every`-th
request is answered after `late_ms` instead of `delay_ms`. With `offset`, the chunks of odd and even requests are
shifted by +OFFSET and -OFFSET index counts: one chunk's action keeps its shift, an average of several does not.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

UNIT = 0.002  # policy rotation units per index count; 0.5 rad per unit (safety.rotation_scale_rad)
OFFSET = 0.25  # index counts


class IndexPolicy:
    def __init__(self, horizon: int = 10, delay_ms: float = 0.0, late_every: int = 0, late_ms: float = 0.0,
                 offset: bool = False) -> None:
        self.horizon, self.delay_ms, self.late_every, self.late_ms = horizon, delay_ms, late_every, late_ms
        self.offset = offset
        self.requests = 0

    def reset(self, instruction: str) -> None:
        pass

    def act(self, obs: dict) -> np.ndarray:
        self.requests += 1
        late = self.late_every and self.requests % self.late_every == 0
        time.sleep((self.late_ms if late else self.delay_ms) / 1000.0)
        steps = int(obs["timestep"]) + np.arange(self.horizon)
        actions = np.zeros((self.horizon, 7), np.float32)
        shift = (OFFSET if self.requests % 2 else -OFFSET) if self.offset else 0.0
        actions[:, 3], actions[:, 5], actions[:, 6] = UNIT * (steps // 100), UNIT * (steps % 100 + shift), -1.0
        return actions


def decode(actions: np.ndarray) -> list[int]:
    """The step each executed action [N, 7] was meant for."""
    return [int(round(a[3] / UNIT)) * 100 + int(round(a[5] / UNIT)) for a in actions]


def shifts(actions: np.ndarray) -> np.ndarray:
    """How far each executed action [N, 7] is off its step, in index counts (+-OFFSET: one chunk's)."""
    return actions[:, 5] / UNIT - np.round(actions[:, 5] / UNIT)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--late-every", type=int, default=0)
    parser.add_argument("--late-ms", type=float, default=0.0)
    parser.add_argument("--offset", action="store_true")
    args = parser.parse_args()
    from lara.real_robot.server import serve

    serve(IndexPolicy(args.horizon, args.delay_ms, args.late_every, args.late_ms, args.offset), "127.0.0.1", args.port)
