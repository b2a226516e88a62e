"""Where the alignment gradient flows: to the hooked layer, the projector and (by default) the LAM encoder."""

from __future__ import annotations

import pytest

import lara
from core_helpers import small_config, token_vla_batch


def grads_after_align_only(base, detach_target: bool) -> dict:
    # lam_weight = 0 and no labels-based base loss reaching the LAM: the IDM only learns through L_align.
    cfg = small_config(lam_weight=0.0, align=lara.AlignConfig(detach_target=detach_target))
    model = lara.attach(base, cfg)
    out = model(**token_vla_batch(base))
    out.loss.backward()
    return {
        "hooked": base.language_model.model.layers[1].self_attn.q_proj.weight.grad,
        "after_hook": base.language_model.model.layers[-1].mlp.down_proj.weight.grad,
        "projector": model.projector.weight.grad,
        "idm": model.lam.idm.embed.weight.grad,
    }


@pytest.mark.tf440
def test_alignment_reaches_policy_projector_and_lam_encoder(token_vla):
    g = grads_after_align_only(token_vla, detach_target=False)
    for name in ("hooked", "projector", "idm"):
        assert g[name] is not None and g[name].abs().sum() > 0, f"no gradient reached {name}"


@pytest.mark.tf440
def test_detach_target_stops_alignment_at_the_lam(token_vla):
    g = grads_after_align_only(token_vla, detach_target=True)
    assert g["idm"] is None or g["idm"].abs().sum() == 0
    assert g["projector"].abs().sum() > 0 and g["hooked"].abs().sum() > 0
