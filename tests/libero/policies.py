"""Policies for the evaluation tests, loaded by file path (`--policy tests/libero/policies.py:factory`)."""

import numpy as np


class FlakyPolicy:
    """Episode 1: NaN actions; episode 2: a wrong shape; later episodes: stand still with the gripper open."""

    def __init__(self):
        self.episode = 0

    def reset(self, instruction: str) -> None:
        self.episode += 1

    def act(self, obs) -> np.ndarray:
        if self.episode == 1:
            return np.full((4, 7), np.nan, dtype=np.float32)
        if self.episode == 2:
            return np.zeros((4, 6), dtype=np.float32)
        return np.tile(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32), (2, 1))


def flaky_policy() -> FlakyPolicy:
    return FlakyPolicy()


class RandomDraws:
    """Draws from numpy's global generator (the harness seeds it per episode), each draw the length of a chunk of
    still actions; the third call raises with the draws, so that they reach the episode's `failure_reason`."""

    def reset(self, instruction: str) -> None:
        self.draws = []

    def act(self, obs) -> np.ndarray:
        if len(self.draws) == 3:
            raise RuntimeError(f"draws {self.draws}")
        self.draws.append(int(np.random.randint(1, 1000)))
        return np.tile(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32), (self.draws[-1] % 3 + 1, 1))


def random_draws() -> RandomDraws:
    return RandomDraws()
