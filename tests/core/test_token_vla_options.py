"""TokenVLA's options for the reference recipe: action chunks, OFT's parallel L1 head, several cameras, the robot
state, a ResNet tower and shift augmentation; each keeps the action positions LARA aligns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lara
from core_helpers import small_config
from lara.align import action_token_mask
from lara.vla import TokenVLA, load_policy
from lara.vla.token_vla import token_vla_config
from lara.vla.token_vla import random_shift
from lara.vla.token_vla.tokenizer import ActionTokenizer, build_example, collate

INSTRUCTION = "pick up the alphabet soup and place it in the basket"
CAMERAS = ["agentview_rgb", "eye_in_hand_rgb"]


def model(**kw) -> TokenVLA:
    torch.manual_seed(0)
    options = dict(width=32, layers=1, image_size=32, chunk_size=4, action_head="l1", cameras=CAMERAS,
                   proprio_dim=8, vision_type="resnet")
    return TokenVLA(token_vla_config(**{**options, **kw})).eval()


def batch(vla: TokenVLA, actions: torch.Tensor, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, cfg = actions.shape[0], vla.config
    ids = ActionTokenizer(cfg.text_config.vocab_size).encode(actions.numpy()).reshape(b, -1)
    out = collate([build_example(INSTRUCTION, row) for row in ids])
    n = len(cfg.cameras)
    out["pixel_values"] = torch.rand(b, n, 3, 32, 32, generator=g) * 2 - 1
    out["proprio"] = torch.randn(b, 8, generator=g)
    return out


def chunk(b: int = 3, h: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, h, 7, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.tf440
def test_l1_head_regresses_the_chunk_without_teacher_forcing_it():
    vla = model()
    target = chunk()
    inputs = batch(vla, target)
    out = vla(**inputs, actions=target)
    assert out.actions.shape == (3, 4, 7)
    assert torch.allclose(out.loss, (out.actions - target).abs().mean())
    # the chunk's token ids in the input are blanked: other target actions give the very same prediction
    other = vla(**batch(vla, chunk(seed=2)))
    assert torch.equal(out.actions, other.actions)


@pytest.mark.tf440
def test_l1_loss_leaves_padding_past_the_episode_end_out():
    vla = model()
    target = chunk()
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 2:] = False
    out = vla(**batch(vla, target), actions=target, action_mask=mask)
    kept = mask[..., None].expand_as(target)
    assert torch.allclose(out.loss, (out.actions - target).abs()[kept].mean())


@pytest.mark.tf440
@pytest.mark.parametrize("head", ["l1", "tokens"])
def test_lara_aligns_the_positions_that_decode_the_chunk(head):
    vla = model(action_head=head)
    inputs = batch(vla, chunk())
    extra = 2 * (32 // 16) ** 2 + 1  # two cameras' 2 x 2 ResNet cells and the proprio token
    first = vla.action_tokenizer.first_id
    mask = action_token_mask(inputs["labels"], first, first + 255, inputs["labels"].shape[1] + extra, insert_at=1)
    assert mask.sum(1).tolist() == [4 * 7] * 3
    wrapped = lara.attach(vla.train(), small_config())
    out = wrapped(**inputs, **({"actions": chunk()} if head == "l1" else {}),
                  lam_frames=torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8))
    assert torch.isfinite(out.loss) and set(out.lara) >= {"align", "lam/recon"}
    out.loss.backward()
    assert vla.vision_backbone.embedder.embedder.convolution.weight.grad.abs().sum() > 0


@pytest.mark.tf440
def test_the_policy_reads_every_camera_and_the_robot_state():
    vla = model()
    x = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    state = torch.randn(1, 8)
    base = vla.predict_action(x, [INSTRUCTION], unnorm=False, proprio=state)
    assert base.shape == (1, 4, 7)
    wrist = x.clone()
    wrist[:, 1] = -wrist[:, 1]
    assert not np.allclose(base, vla.predict_action(wrist, [INSTRUCTION], unnorm=False, proprio=state))
    assert not np.allclose(base, vla.predict_action(x, [INSTRUCTION], unnorm=False, proprio=state + 1))
    with pytest.raises(ValueError, match=r"`proprio` \(B, 8\)"):
        vla.predict_action(x, [INSTRUCTION])
    with pytest.raises(ValueError, match=r"pixel_values must be \(B, 2, 3, S, S\)"):
        vla.predict_action(x[:, 0], [INSTRUCTION], proprio=state)


@pytest.mark.tf440
@pytest.mark.parametrize("head", ["l1", "tokens"])
def test_saved_policy_acts_with_chunks_on_an_observation(head, tmp_path):
    vla = model(action_head=head, vision_type="siglip", patch_size=8)
    vla.config.proprio_stats = {"mean": [0.5] * 8, "std": [2.0] * 8}
    vla.config.norm_stats = {"q01": [-0.5] * 7, "q99": [0.5] * 7, "mask": [True] * 6 + [False]}
    vla.save_pretrained(tmp_path / "vla")
    policy = load_policy(tmp_path / "vla")
    assert policy.cameras == tuple(CAMERAS) and policy.model.config.proprio_stats["std"] == [2.0] * 8
    policy.reset(INSTRUCTION)
    rng = np.random.default_rng(0)
    obs = {camera: rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for camera in CAMERAS}
    obs.update(ee_pos=np.zeros(3), ee_ori=np.ones(3), gripper_qpos=np.zeros(2))
    actions = policy.act(obs)
    assert actions.shape == (4, 7) and actions.dtype == np.float32
    assert np.abs(actions[:, :6]).max() <= 0.5 + 1e-6  # un-normalised into the statistics' range
    policy.model.config.norm_stats = None  # the same observation, left normalised
    raw = policy.act(obs)
    assert np.allclose(actions[:, :6], 0.5 * raw[:, :6]) and np.array_equal(actions[:, 6], raw[:, 6])
    with pytest.raises(ValueError, match="obs lacks \\['gripper_qpos'\\]"):
        policy.act({k: v for k, v in obs.items() if k != "gripper_qpos"})


@pytest.mark.tf440
def test_shift_augmentation_only_in_training():
    vla = model(image_shift=2)
    inputs = batch(vla, chunk())
    assert torch.equal(vla(**inputs).actions, vla(**inputs).actions)  # eval: no augmentation
    vla.train()
    torch.manual_seed(0)
    first = vla(**inputs).actions
    assert not torch.equal(first, vla(**inputs).actions)
    torch.manual_seed(0)
    assert torch.equal(first, vla(**inputs).actions)  # torch's generator: a resumed run draws the same shifts


@pytest.mark.tf440
def test_random_shift_is_a_crop_of_the_edge_padded_image():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    torch.manual_seed(3)
    shifted = random_shift(images, 2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for i in range(2):
        crops = [padded[i, :, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(shifted[i], crop) for crop in crops)
    assert any(not torch.equal(random_shift(images, 2), images) for _ in range(5))  # (0, 0) is 1 of 25 offsets


@pytest.mark.tf440
def test_config_refuses_unknown_options():
    with pytest.raises(ValueError, match="action_head must be one of"):
        token_vla_config(action_head="diffusion")
    with pytest.raises(ValueError, match="vision_type must be one of"):
        token_vla_config(vision_type="vit")
