"""The reference TokenVLA: OpenVLA's tokenization, module paths and action positions; native save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lara
from core_helpers import small_config, token_vla_batch
from lara.align import action_token_mask
from lara.vla import TokenVLA, load_policy
from lara.vla.checks import image_dependence
from lara.vla.token_vla import tiny_token_vla
from lara.vla.token_vla.tokenizer import ActionTokenizer, normalize, unnormalize


@pytest.mark.tf440
def test_action_tokens_round_trip_within_half_a_bin():
    tok = ActionTokenizer(vocab_size=32000)
    a = np.random.default_rng(0).uniform(-1, 1, (100, 7))
    ids = tok.encode(a)
    assert ids.min() >= 31744 and ids.max() <= 31999  # OpenVLA's action ids
    assert np.abs(tok.decode(ids) - a).max() <= 1 / 255 + 1e-9


@pytest.mark.tf440
def test_q99_normalisation_round_trip_keeps_gripper_raw():
    stats = {"q01": [-0.5] * 6 + [0.0], "q99": [0.5] * 6 + [1.0], "mask": [True] * 6 + [False]}
    a = np.random.default_rng(0).uniform(-0.5, 0.5, (10, 7))
    a[:, 6] = np.sign(a[:, 6])
    n = normalize(a, stats)
    assert np.array_equal(n[:, 6], a[:, 6]) and np.abs(n).max() <= 1
    np.testing.assert_allclose(unnormalize(n, stats), a, atol=1e-6)


@pytest.mark.tf440
def test_action_positions_are_the_ones_decoding_action_tokens(token_vla):
    batch = token_vla_batch(token_vla)
    first = token_vla.action_tokenizer.first_id
    n_patches = (32 // 8) ** 2
    mask = action_token_mask(batch["labels"], first, first + 255, batch["labels"].shape[1] + n_patches, insert_at=1)
    assert mask.sum(1).tolist() == [7] * 4  # one hidden state per action dimension
    # position i decodes token i+1 of the spliced sequence, which must be an action token
    spliced = torch.cat([batch["labels"][:, :1], torch.full((4, n_patches), -100), batch["labels"][:, 1:]], 1)
    assert ((spliced[:, 1:][mask[:, :-1]] >= first)).all()


@pytest.mark.tf440
def test_openvla_spec_on_a_model_with_openvla_paths_and_ids():
    torch.manual_seed(0)
    vla = tiny_token_vla(vocab_size=32000, layers=4)
    model = lara.attach(vla, small_config(backbone="openvla"))
    assert model.layer_name == "language_model.model.layers.3"  # 3/4 depth, as layer 24 of OpenVLA's 32
    out = model(**token_vla_batch(vla))
    assert torch.isfinite(out.loss)


@pytest.mark.tf440
def test_save_pretrained_round_trip_and_policy(token_vla, tmp_path):
    token_vla.config.norm_stats = {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}
    token_vla.save_pretrained(tmp_path)
    again = TokenVLA.from_pretrained(tmp_path)
    batch = {k: v for k, v in token_vla_batch(token_vla).items() if k != "lam_frames"}
    assert torch.equal(token_vla.eval()(**batch).logits, again.eval()(**batch).logits)
    policy = load_policy(tmp_path)
    policy.reset("put the bowl on the plate")
    action = policy.act({"agentview_rgb": np.zeros((64, 64, 3), np.uint8)})
    assert action.shape == (1, 7) and action.dtype == np.float32
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        policy.act({"agentview_rgb": np.zeros((64, 64), np.float32)})


@pytest.mark.tf440
def test_image_dependence_check_catches_a_dropped_vision_tower(token_vla):
    assert image_dependence(token_vla) > 0
    with torch.no_grad():
        token_vla.projector.fc2.weight.zero_()
        token_vla.projector.fc2.bias.zero_()
    with pytest.raises(RuntimeError, match="do not depend on the image"):
        image_dependence(token_vla)
