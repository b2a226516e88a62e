"""detach gives back the untouched VLA; save -> load is a bitwise round trip with strict keys."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

import lara
from core_helpers import small_config, token_vla_batch


def no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.tf440
def test_detach_returns_the_same_untouched_object(token_vla):
    never_attached = copy.deepcopy(token_vla)
    batch = token_vla_batch(token_vla)
    model = lara.attach(token_vla, small_config())
    model(**batch)  # a LARA forward registers and removes its hook
    base = lara.detach(model)
    assert base is token_vla
    assert no_hooks(base)
    assert not hasattr(base, "_lara_attached")
    vla_inputs = {k: v for k, v in batch.items() if k != "lam_frames"}
    assert torch.equal(base(**vla_inputs).logits, never_attached(**vla_inputs).logits)
    sd, ref = base.state_dict(), never_attached.state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in sd)
    with pytest.raises(RuntimeError, match="detached"):
        model(**batch)
    lara.attach(base, small_config())  # a detached VLA can be attached again


@pytest.mark.tf440
def test_save_load_round_trip_is_bitwise(token_vla, tmp_path):
    model = lara.attach(token_vla, small_config(lam=dict(quantizer="vq")))
    model.train()
    model(**token_vla_batch(token_vla))  # moves the EMA codebook away from its init
    lara.save(model, tmp_path)
    fresh = copy.deepcopy(lara.detach(model))
    loaded = lara.load(fresh, tmp_path)
    assert loaded.config == model.config
    for name in ("projector", "lam"):
        a, b = getattr(model, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.tf440
@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_load_rejects_mismatched_keys(token_vla, tmp_path, change):
    model = lara.attach(token_vla, small_config())
    lara.save(model, tmp_path)
    tensors = load_file(tmp_path / "lara.safetensors")
    if change == "missing":
        tensors.pop("projector.weight")
    else:
        tensors["lam.extra"] = torch.zeros(1)
    save_file(tensors, tmp_path / "lara.safetensors")
    with pytest.raises(KeyError, match=change):
        lara.load(copy.deepcopy(lara.detach(model)), tmp_path)


def test_load_names_the_missing_file(token_vla, tmp_path):
    with pytest.raises(FileNotFoundError, match="lara_config.json"):
        lara.load(token_vla, tmp_path)
