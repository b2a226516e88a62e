"""The LAM warm-up's batches may mix demonstrations with action-free frames (posttrain.lam_warmup_paths): the
missing actions are zero-filled and masked, and the LAM's action loss leaves them out exactly."""

from __future__ import annotations

import pytest
import torch

import lara
from lara.adapters.common import lam_inputs
from lara.vla.batch import lara_inputs

K = 3  # lara.lam.action_horizon = the frame gap of these samples


def sample(seed: int, actions: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {"lam_frames": torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8),
           "lam_valid": torch.tensor(True)}
    if actions:
        out["lam_actions"] = torch.randn(K, 7, generator=g)
        out["lam_action_mask"] = torch.tensor([True, True, seed % 2 == 0])  # a step past an episode's end
    return out


def test_missing_actions_are_zero_filled_and_masked_where_vla_batches_still_refuse_the_mix():
    samples = [sample(0, True), sample(1, False), sample(2, True), sample(3, False)]
    batch = lam_inputs(samples)
    assert batch["lam_actions"].shape == (4, K, 7) and not batch["lam_actions"][[1, 3]].any()
    assert batch["lam_action_mask"].tolist() == [[True, True, True], [False] * 3, [True, True, True], [False] * 3]
    assert "lam_action_free" not in batch
    assert lam_inputs([sample(1, False), sample(3, False)])["lam_action_free"] is True  # frames only, as before
    assert torch.equal(lam_inputs(samples[::2])["lam_actions"], lara_inputs(samples[::2])["lam_actions"])
    with pytest.raises(ValueError, match="mixes samples with and without actions"):
        lara_inputs(samples)


def test_the_lam_action_loss_is_the_labelled_samples_own_whatever_fills_the_masked_ones():
    torch.manual_seed(0)
    lam = lara.LatentActionModel(lara.LAMConfig(image_size=16, patch_size=8, width=16, heads=2, idm_layers=1,
                                                fdm_layers=1, action_horizon=K)).eval()
    samples = [sample(0, True), sample(1, False), sample(2, True), sample(3, False)]
    mixed = lam_inputs(samples)

    def action_loss(batch: dict) -> torch.Tensor:
        return lam(batch["lam_frames"].float() / 255, batch["lam_actions"], batch["lam_valid"],
                   batch["lam_action_mask"]).losses["action"]

    labelled = lara_inputs(samples[::2])
    assert torch.allclose(action_loss(mixed), action_loss(labelled), rtol=1e-6, atol=0)
    garbage = {**mixed, "lam_actions": mixed["lam_actions"].clone()}
    garbage["lam_actions"][[1, 3]] = 1e6  # what fills a masked sample must not matter at all
    assert torch.equal(action_loss(garbage), action_loss(mixed))
    all_masked = {**mixed, "lam_action_mask": torch.zeros_like(mixed["lam_action_mask"])}
    assert action_loss(all_masked).item() == 0.0  # no labelled step: no action loss (and no NaN from 0 / 0)
