"""Bad input raises errors that name the key, what was expected and what was given."""

from __future__ import annotations

import os

import pytest
import torch

import lara
from core_helpers import GenericPolicy, generic_batch, small_config, token_vla_batch


@pytest.fixture
def model(token_vla):
    return lara.attach(token_vla, small_config())


@pytest.mark.tf440
def test_missing_frames(model, token_vla):
    batch = token_vla_batch(token_vla)
    batch.pop("lam_frames")
    with pytest.raises(KeyError, match=r"lam_frames.*\(B, 2, C, H, W\)"):
        model(**batch)


@pytest.mark.tf440
@pytest.mark.parametrize(
    "frames, message",
    [
        (torch.zeros(4, 3, 3, 32, 32, dtype=torch.uint8), r"\(B, 2, 3, H, W\).*got \(4, 3, 3, 32, 32\)"),
        (torch.zeros(4, 2, 1, 32, 32, dtype=torch.uint8), r"got \(4, 2, 1, 32, 32\)"),
        (torch.zeros(4, 2, 3, 4, 4, dtype=torch.uint8), "smaller than one 8x8 LAM patch"),
        (torch.zeros(4, 2, 3, 32, 32, dtype=torch.int32), "uint8 or floating point; got torch.int32"),
        (torch.full((4, 2, 3, 32, 32), float("nan")), "NaN or inf"),
        (torch.arange(4 * 2 * 3 * 32 * 32).reshape(4, 2, 3, 32, 32) % 256.0,
         r"float `lam_frames` must lie in \[0, 1\]; found values in \[0, 255\]. Pass 0..255 frames as uint8"),
        (torch.full((4, 2, 3, 32, 32), -0.5), r"found values in \[-0.5, -0.5\]"),
        (torch.zeros(3, 2, 3, 32, 32), r"`lam_frames` holds 3 samples but the model's batch has 4"),
    ],
    ids=["frame-count", "channels", "too-small", "dtype", "nan", "0-255-floats", "negative", "batch-size"],
)
def test_malformed_frames(model, token_vla, frames, message):
    batch = {**token_vla_batch(token_vla), "lam_frames": frames}
    with pytest.raises(ValueError, match=message):
        model(**batch)


@pytest.mark.tf440
def test_bad_valid_mask(model, token_vla):
    batch = {**token_vla_batch(token_vla), "lam_valid": torch.ones(3)}
    with pytest.raises(ValueError, match=r"lam_valid.*bool.*\(4,\)"):
        model(**batch)


@pytest.mark.tf440
def test_unknown_layer_lists_nearest_names(token_vla):
    cfg = small_config(align=lara.AlignConfig(layer="language_model.model.layer.1"))
    with pytest.raises(ValueError, match=r"does not exist.*Nearest module names: \[.*language_model\.model\.layers"):
        lara.attach(token_vla, cfg)


@pytest.mark.tf440
def test_attaching_twice_raises(token_vla):
    model = lara.attach(token_vla, small_config())
    with pytest.raises(ValueError, match="already attached"):
        lara.attach(token_vla, small_config())
    with pytest.raises(ValueError, match="already attached"):
        lara.attach(model, small_config())


@pytest.mark.tf440
def test_generic_needs_a_layer_and_a_mapping_output():
    with pytest.raises(ValueError, match="set LaraConfig.align.layer"):
        lara.attach(GenericPolicy(), small_config())

    class ReturnsTensor(GenericPolicy):
        def forward(self, obs, actions=None):
            return super().forward(obs, actions)["actions"]

    model = lara.attach(ReturnsTensor(), small_config(align=lara.AlignConfig(layer="encoder")))
    with pytest.raises(TypeError, match="must be a mapping with 'loss'"):
        model(**generic_batch())


@pytest.mark.tf440
def test_config_validates_at_construction():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        lara.LAMConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="extra"):
        lara.LaraConfig(align_wieght=0.1)
    with pytest.raises(ValueError, match="unknown backbone spec 'pio'"):
        lara.attach(GenericPolicy(), small_config(backbone="pio"))
    cfg = small_config(align=lara.AlignConfig(loss="infonce"))
    assert lara.LaraConfig.model_validate_json(cfg.model_dump_json()) == cfg
    for model in (lara.LaraConfig, lara.AlignConfig, lara.LAMConfig):
        assert all(f.description for f in model.model_fields.values()), model


@pytest.mark.tf440
def test_action_token_positions_need_a_spec_with_token_ids():
    cfg = small_config(align=lara.AlignConfig(layer="encoder", positions="action_tokens"))
    with pytest.raises(ValueError, match="action-token ids.*spec 'generic'"):
        lara.attach(GenericPolicy(), cfg)


@pytest.mark.tf440
def test_float_frames_in_0_1_pass_and_a_single_pair_is_not_broadcast(model, token_vla):
    batch = token_vla_batch(token_vla)
    out = model(**{**batch, "lam_frames": batch["lam_frames"].float() / 255.0})
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match=r"holds 1 samples but the model's batch has 4"):  # (1, D) would broadcast
        model(**{**batch, "lam_frames": batch["lam_frames"][:1]})


@pytest.mark.tf440
def test_a_target_layer_without_a_token_axis():
    batch = generic_batch()
    # GenericPolicy's head outputs (B, 7); 'all' (the generic default) takes that as one position per sample
    model = lara.attach(GenericPolicy(), small_config(align=lara.AlignConfig(layer="head")))
    out = model(**batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.projector.weight.grad is not None
    last_k = lara.attach(GenericPolicy(), small_config(align=lara.AlignConfig(layer="head", positions="last_k",
                                                                              chunk=2)))
    with pytest.raises(ValueError, match=r"target layer 'head' outputs \(4, 7\); LARA expects hidden states \(B, T, W\)"
                                         r".*align.positions='all' takes it as one position per sample \(positions is "
                                         r"'last_k'\)"):
        last_k(**batch)
    wrong_width = lara.attach(GenericPolicy(), small_config(align=lara.AlignConfig(layer="encoder", hidden_size=16)))
    with pytest.raises(ValueError, match=r"outputs width 32, but the projector takes 16: set .*hidden_size=32"):
        wrong_width(**batch)


def test_a_full_disk_or_a_name_too_long_anywhere_is_one_line_and_other_os_errors_keep_their_traceback(capsys):
    """Issue 38 finding 9: the writers lara.outputs.writing does not wrap still end on one line, naming the file."""
    import errno

    from lara.errors import run_command

    def failing(code: int):
        def main(argv):
            raise OSError(code, os.strerror(code), "runs/x/model.safetensors")
        return main

    assert run_command("lara train", failing(errno.ENOSPC), []) == 2
    assert capsys.readouterr().err == ("lara train: error: runs/x/model.safetensors: no space left on the device (the "
                                       "write failed: No space left on device); free some space or give an output on "
                                       "another disk\n")
    assert run_command("lara train", failing(errno.ENAMETOOLONG), []) == 2
    assert capsys.readouterr().err == ("lara train: error: runs/x/model.safetensors: a name is longer than the "
                                       "filesystem allows (255 bytes on most); give a shorter name\n")
    with pytest.raises(PermissionError):  # not the user's input: a traceback
        run_command("lara train", failing(errno.EACCES), [])
