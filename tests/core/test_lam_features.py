"""The LAM on frozen vision-model features (DINOv2 / SigLIP), from a config dict or a local path."""

from __future__ import annotations

import pytest
import torch

import lara

DINOV2 = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64, image_size=32, patch_size=8)
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=64, image_size=32, patch_size=8)


def lam_config(vision) -> lara.LAMConfig:
    return lara.LAMConfig(input="features", target="features", vision_model=vision, width=32, heads=2,
                          idm_layers=1, fdm_layers=1)


@pytest.mark.tf440
@pytest.mark.parametrize("vision", [DINOV2, SIGLIP], ids=["dinov2", "siglip"])
def test_feature_lam_trains_and_keeps_the_vision_model_frozen(vision):
    torch.manual_seed(0)
    lam = lara.LatentActionModel(lam_config(vision))
    frozen = [p.clone() for p in lam.tokenizer.vision.parameters()]
    assert not any(k.startswith("tokenizer.vision") for k in lam.state_dict()), "frozen model must not be saved"
    opt = torch.optim.Adam(lam.parameters(), lr=1e-3)
    frames = torch.rand(8, 2, 3, 48, 48)  # resized to the vision model's 32 px
    losses = []
    for _ in range(15):
        out = lam(frames)
        out.losses["total"].backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.losses["recon"].item())
    assert out.z.shape == (8, 8, 32) and out.now.shape == (8, 16, 32)  # 4x4 patch tokens, CLS dropped
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(frozen, lam.tokenizer.vision.parameters()))


@pytest.mark.tf440
def test_feature_lam_loads_a_local_vision_model(tmp_path):
    from transformers import AutoConfig, AutoModel

    spec = dict(DINOV2)
    AutoModel.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec)).save_pretrained(tmp_path)
    lam = lara.LatentActionModel(lam_config(str(tmp_path)))
    assert type(lam.tokenizer.vision).__name__ == "Dinov2Model"
    assert torch.isfinite(lam(torch.rand(2, 2, 3, 32, 32)).losses["total"])


@pytest.mark.tf440
def test_target_must_match_input():
    with pytest.raises(ValueError, match="must be the same"):
        lara.LAMConfig(input="features", target="pixels", vision_model=DINOV2)
