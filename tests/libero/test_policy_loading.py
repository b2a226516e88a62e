"""`--policy checkpoint:DIR` loads a saved TokenVLA as a Policy that acts on LIBERO observations."""

from __future__ import annotations

import numpy as np
import pytest

from lara.benchmarks.rollout import check_chunk
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


def test_runs_saved_before_the_backbone_table_still_load(tmp_path):
    """Exports written by main before lara/vla/backbones.py: a TokenVLA whose statistics live only in its config,
    and a pi0 whose dataset_statistics.json sits in RUN/final beside vla/ rather than in it."""
    import json

    import torch

    from lara.vla.pi0 import FlowPolicy, tiny_pi0
    from lara.vla.token_vla import TokenVLAPolicy

    token_vla = tiny_token_vla()
    token_vla.config.norm_stats = {"q01": [-0.5] * 7, "q99": [0.5] * 7, "mask": [True] * 6 + [False]}
    token_vla.save_pretrained(tmp_path / "old_token_vla" / "final" / "vla")
    assert isinstance(load_policy(f"checkpoint:{tmp_path / 'old_token_vla' / 'final' / 'vla'}"), TokenVLAPolicy)

    torch.manual_seed(0)
    final = tmp_path / "old_pi0" / "final"
    tiny_pi0(chunk_size=4).save_pretrained(final / "vla")
    stats = {"mean": [0.0] * 8, "std": [1.0] * 8, "min": [-1.0] * 8, "max": [1.0] * 8, "q01": [-1.0] * 8,
             "q99": [1.0] * 8}
    action = {**{k: v[:7] for k, v in stats.items()}, "mask": [True] * 6 + [False]}
    (final / "dataset_statistics.json").write_text(json.dumps({"libero": {"action": action, "proprio": stats}}))
    policy = load_policy(f"checkpoint:{final / 'vla'}")
    assert isinstance(policy, FlowPolicy)
    policy.reset("put the cream cheese in the bowl")
    obs = {"agentview_rgb": np.zeros((64, 64, 3), np.uint8), "ee_pos": np.zeros(3), "ee_ori": np.zeros(3),
           "gripper_qpos": np.zeros(2)}
    assert check_chunk(policy.act(obs)) is None
