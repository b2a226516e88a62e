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
