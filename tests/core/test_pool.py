"""Pooling the action positions of the captured hidden state to the one vector the projector sees."""

import torch

from lara.align import pool


def test_pool_picks_the_first_last_or_mean_action_position():
    hidden = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)  # (B, T, 1): position t holds 5b + t
    mask = torch.tensor([[False, True, True, True, False], [False, False, True, False, True]])
    assert pool(hidden, mask, "first").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, mask, "last").flatten().tolist() == [3.0, 9.0]
    assert pool(hidden, mask, "mean").flatten().tolist() == [2.0, 8.0]
