"""`--policy checkpoint:DIR` loads a saved TokenVLA as a Policy that acts on LIBERO observations."""

from __future__ import annotations

import numpy as np
import pytest

from lara.benchmarks.libero.evaluate import check_chunk
from lara.policy import load_policy
from lara.vla.token_vla import tiny_token_vla


def test_checkpoint_policy_acts_on_a_libero_observation(tmp_path):
    tiny_token_vla().save_pretrained(tmp_path)
    policy = load_policy(f"checkpoint:{tmp_path}")
    policy.reset("put the cream cheese in the bowl")
    obs = {"agentview_rgb": np.zeros((256, 256, 3), np.uint8), "eye_in_hand_rgb": np.zeros((256, 256, 3), np.uint8)}
    chunk = policy.act(obs)
    assert check_chunk(chunk) is None and chunk.shape == (1, 7)


def test_checkpoint_policy_names_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_policy(f"checkpoint:{tmp_path / 'nowhere'}")
