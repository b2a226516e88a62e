"""A policy for the chunk-execution test, loaded by file path (`--policy tests/libero/chunk_policy.py:small_moves`):
chunks of 4 small moves along +x with the gripper open; it checks that every observation it gets is a LIBERO one."""

import numpy as np


class SmallMoves:
    def reset(self, instruction: str) -> None:
        assert instruction

    def act(self, obs) -> np.ndarray:
        assert obs["agentview_rgb"].shape == (32, 32, 3) and obs["ee_pos"].shape == (3,)
        return np.tile(np.array([0.2, 0, 0, 0, 0, 0, -1], dtype=np.float32), (4, 1))


def small_moves() -> SmallMoves:
    return SmallMoves()
