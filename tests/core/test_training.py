"""attach -> 30 optimiser steps on a fixed batch: every LARA loss component goes down, on real backbones."""

from __future__ import annotations

import pytest
import torch

import lara
from core_helpers import GenericPolicy, generic_batch, pi0_batch, small_config, token_vla_batch
from lara.vla.token_vla import tiny_token_vla

DECREASING = ("base", "align", "lam/recon", "lam/action", "fdm")


def train(model, batch: dict, steps: int = 30) -> tuple[dict, dict]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    first = last = None
    for _ in range(steps):
        out = model(**dict(batch))
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        comps = {k: float(v) for k, v in out["lara"].items()}
        first = first or comps
        last = comps
    return first, last


def lam_actions(batch_size: int) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"lam_actions": torch.randn(batch_size, 4, 7, generator=g)}


def make(kind: str):
    torch.manual_seed(0)
    cfg = small_config(fdm_weight=0.5, lam=dict(action_horizon=4))
    if kind == "token_vla":
        base = tiny_token_vla()
        return base, cfg, token_vla_batch(base)
    if kind == "pi0":
        pytest.importorskip("transformers", minversion="5.0")
        from lara.vla.pi0 import tiny_pi0

        return tiny_pi0(), cfg, pi0_batch()
    base = GenericPolicy()
    return base, cfg.model_copy(update={"align": lara.AlignConfig(layer="encoder")}), generic_batch()


def check_decreases(first: dict, last: dict) -> None:
    for key in DECREASING:
        assert last[key] < first[key], f"{key} did not decrease: {first[key]:.4f} -> {last[key]:.4f}"
    assert last["align/cos"] > first["align/cos"]


@pytest.mark.parametrize("kind", ["token_vla", "pi0", "generic"])
def test_every_component_decreases(kind):
    base, cfg, batch = make(kind)
    model = lara.attach(base, cfg)
    first, last = train(model, {**batch, **lam_actions(4)})
    check_decreases(first, last)


@pytest.mark.parametrize("kind", ["token_vla", "pi0"])
def test_every_component_decreases_under_lora(kind):
    peft = pytest.importorskip("peft")
    base, cfg, batch = make(kind)
    targets = ["q_proj", "v_proj"]
    lora = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    model = lara.attach(lora, cfg)
    assert model.layer_name.startswith("base_model.model.")
    frozen = [n for n, p in model.base.named_parameters() if not p.requires_grad]
    assert frozen, "LoRA should freeze the base weights"
    first, last = train(model, {**batch, **lam_actions(4)})
    check_decreases(first, last)


@pytest.mark.tf440
def test_token_vla_trains(token_vla):
    """The TokenVLA path alone: also runs against transformers 4.40 (OpenVLA's pin)."""
    model = lara.attach(token_vla, small_config(fdm_weight=0.5))
    first, last = train(model, token_vla_batch(token_vla), steps=20)
    for key in ("base", "align", "lam/recon", "fdm"):
        assert last[key] < first[key]


@pytest.mark.tf440
def test_alignment_disabled_is_the_base_loss(token_vla):
    batch = token_vla_batch(token_vla)
    expected = token_vla(**{k: v for k, v in batch.items() if k != "lam_frames"}).loss
    model = lara.attach(token_vla, small_config())
    with model.alignment_disabled():
        out = model(**batch)
    assert "lara" not in out
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=0)
    assert "lara" in model(**batch)


@pytest.mark.tf440
def test_a_generic_models_dict_output_reads_as_attributes():
    """The README loop (`out.loss.backward()`, `out.lara`) on a model returning a plain dict."""
    model = lara.attach(GenericPolicy(), small_config(align=lara.AlignConfig(layer="encoder")))
    out = model(**generic_batch())
    assert isinstance(out, dict) and out.loss is out["loss"] and out.lara is out["lara"]
    assert out.actions.shape == (4, 7)
    out.loss.backward()
    assert model.base.head.weight.grad is not None and model.projector.weight.grad is not None
    with pytest.raises(AttributeError, match=r"has no 'logits'; its keys: \['actions', 'lara', 'loss'\]"):
        out.logits
    with model.alignment_disabled():
        base_only = model(**generic_batch())
    assert base_only.loss is base_only["loss"] and "lara" not in base_only
