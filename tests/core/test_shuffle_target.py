"""The lara_shuffled control: alignment to another sample's latent action, everything else unchanged."""

from __future__ import annotations

import torch

import lara
from core_helpers import small_config, token_vla_batch
from lara.model import shuffled_among_valid


def test_every_valid_sample_takes_another_valid_samples_latent():
    z = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 3)  # (6, 3): row i holds i
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = shuffled_among_valid(z, valid)
        source = out[:, 0].long().tolist()
        assert source[2] == 2  # an invalid sample keeps its own (its loss weight is 0) and is given to nobody
        kept = [source[i] for i in (0, 1, 3, 4, 5)]
        assert sorted(kept) == [0, 1, 3, 4, 5] and all(s != i for s, i in zip(kept, (0, 1, 3, 4, 5)))
        seen.add(tuple(source))
    assert len(seen) > 5  # a fresh permutation each call


def test_two_valid_samples_swap_and_one_keeps_its_own():
    z = torch.tensor([[1.0], [2.0], [3.0]])
    assert shuffled_among_valid(z, torch.tensor([1.0, 0.0, 1.0])).flatten().tolist() == [3.0, 2.0, 1.0]
    assert shuffled_among_valid(z, torch.tensor([0.0, 1.0, 0.0])).flatten().tolist() == [1.0, 2.0, 3.0]


def components(base, shuffle: bool, batch: dict) -> dict:
    """The LARA loss components of one forward of `base` with a freshly attached (same-seeded) LAM and projector."""
    torch.manual_seed(0)
    model = lara.attach(base, small_config(align=lara.AlignConfig(shuffle_target=shuffle)))
    model.eval()
    with torch.no_grad():
        out = model(**{k: v.clone() for k, v in batch.items()})
    lara.detach(model)
    return out.lara


def test_shuffling_changes_the_alignment_only_where_samples_differ(token_vla):
    batch = token_vla_batch(token_vla, batch_size=4)
    plain, shuffled = components(token_vla, False, batch), components(token_vla, True, batch)
    assert shuffled["align"] != plain["align"]  # aligned to other samples' latents
    for key in ("base", "lam/recon", "lam/action", "lam/z_std", "align/constant"):  # nothing else moved
        assert torch.equal(shuffled[key], plain[key]), key


def test_with_identical_samples_the_shuffled_target_is_the_target(token_vla):
    batch = token_vla_batch(token_vla, batch_size=1)
    same = {k: v.repeat(3, *([1] * (v.ndim - 1))) for k, v in batch.items()}  # three copies of one sample
    plain, shuffled = components(token_vla, False, same), components(token_vla, True, same)
    assert torch.allclose(shuffled["align"], plain["align"], atol=1e-6)


def test_the_shuffled_alignment_still_trains_the_lam_encoder(token_vla):
    model = lara.attach(token_vla, small_config(lam_weight=0.0, align=lara.AlignConfig(shuffle_target=True)))
    model(**token_vla_batch(token_vla)).loss.backward()
    assert model.lam.idm.embed.weight.grad.abs().sum() > 0
