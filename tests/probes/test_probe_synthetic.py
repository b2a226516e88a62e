"""The probes judge latent actions on synthetic moving-square pairs (what `lara probe --synthetic` runs).

Half the squares are dark on a light background: the raw pixel difference then holds the move only up to a
sign, which a linear probe cannot read, while a trained LAM's latent encodes the move itself. The trained LAM
here is the project's (an action head on z, as the recipes train it where actions exist), kept small so the
file runs in well under a minute.
"""

from __future__ import annotations

import math

import torch

import lara
from lara.benchmarks.probes import probe as P
from lara.benchmarks.probes.distractors import DistractorConfig
from lara.benchmarks.probes.lam_health import train_lam

SMALL = dict(image_size=16, patch_size=4, width=32, heads=2, idm_layers=1, fdm_layers=1, quantizer="vq",
             codebook_size=16, action_horizon=1, action_dim=2)


def trained(cfg: lara.LAMConfig, data: P.PairData, test: torch.Tensor, steps: int) -> lara.LatentActionModel:
    lam, _ = train_lam(cfg, data.frames[~test], data.actions[~test], steps, 64, 2e-3, 0, steps)
    return lam


def test_trained_lam_beats_pixel_difference_and_an_untrained_lam(tmp_path):
    data = P.synthetic_pairs(1000, seed=0)
    test, _ = P.split_by_episode(data, 0.25, seed=0)
    lara.save_lam(trained(lara.LAMConfig(**SMALL), data, test, 400), tmp_path / "lam")
    report = P.run(data, [f"lam:{tmp_path / 'lam'}", "untrained_lam", "pixel_diff"], 16, seed=0, mlp_steps=200,
                   distractors=DistractorConfig())
    rows = report["representations"]
    lam, untrained, pixels = (rows[k]["clean"] for k in ("lam[lam]:z", "untrained_lam:z", "pixel_diff"))
    assert lam["ridge"]["r2"] >= 0.9 and lam["ridge"]["r2"] > pixels["ridge"]["r2"], P.table(report)
    assert untrained["ridge"]["r2"] < lam["ridge"]["r2"] - 0.2, P.table(report)
    assert lam["task"]["accuracy"] >= 0.9 and lam["task"]["accuracy"] > pixels["task"]["accuracy"] + 0.3
    codes = rows["lam[lam]:codes"]["clean"]["codes"]
    assert codes["codes_used"] > 4 and codes["purity"] > codes["purity_chance"] + 0.1
    # the correlated distractor costs the pixel-input LAM, and the report says how much
    assert rows["lam[lam]:z"]["ridge_r2_drop"] > 0.1
    assert len(lam["ridge"]["r2_per_dim"]) == 2 and "r2" in lam["mlp"]


# a PaliGemma of random weights built from a config: its image features must have the text width (projection_dim)
PALIGEMMA = dict(model_type="paligemma", image_token_index=299, projection_dim=32,
                 vision_config=dict(model_type="siglip_vision_model", hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4,
                                    projection_dim=32),
                 text_config=dict(model_type="gemma", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  num_key_value_heads=1, head_dim=16, intermediate_size=64, vocab_size=300))


def test_vlm_target_lam_trains_on_prompted_features_and_is_probed_the_same_way(tmp_path):
    cfg = lara.LAMConfig(**{**SMALL, "quantizer": "none", "target": "vlm", "target_model": PALIGEMMA,
                            "target_prompt": "the square's motion"})
    data = P.synthetic_pairs(300, seed=1)
    test, _ = P.split_by_episode(data, 0.25, seed=0)
    torch.manual_seed(0)
    lam = lara.LatentActionModel(cfg)
    vlm = lam.target_encoder.vlm
    frozen = [p.clone() for p in vlm.parameters()]
    assert not any("target_encoder" in k for k in lam.state_dict()), "the frozen VLM must not be saved"
    out = lam(data.frames[:8].float() / 255)
    assert out.now.shape == out.target.shape == out.pred.shape == (8, 1, 32)  # one pooled token of the VLM's width
    lam, log = train_lam(cfg, data.frames[~test], data.actions[~test], 60, 32, 2e-3, 0, 10)
    assert log[-1]["recon"] < log[0]["recon"]
    assert all(torch.equal(a, b) for a, b in zip(frozen, lam.target_encoder.vlm.parameters()))
    lara.save_lam(lam, tmp_path / "vlm_lam")
    report = P.run(data, [f"lam:{tmp_path / 'vlm_lam'}"], 16, seed=0, mlp_steps=50, distractors=DistractorConfig())
    row = report["representations"]["lam[vlm_lam]:z"]
    assert {"clean", "distractors", "ridge_r2_drop"} <= set(row)
    assert math.isfinite(row["clean"]["ridge"]["r2"]) and len(row["clean"]["ridge"]["r2_per_dim"]) == 2


def test_the_prompt_reaches_the_target():
    base = dict(SMALL, quantizer="none", target="vlm", target_model=PALIGEMMA)
    frames = torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    a = lara.LatentActionModel(lara.LAMConfig(**base, target_prompt="the arm")).target_encoder
    torch.manual_seed(0)
    b = lara.LatentActionModel(lara.LAMConfig(**base, target_prompt="the distractor")).target_encoder
    assert not torch.allclose(a(frames), b(frames))
    with torch.no_grad():
        assert torch.allclose(a(frames), a(frames))


def test_vlm_target_needs_a_model():
    import pytest

    with pytest.raises(ValueError, match="target='vlm' needs target_model"):
        lara.LAMConfig(target="vlm")


def test_vlm_target_from_a_local_folder_reads_the_prompt_with_its_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    spec = dict(PALIGEMMA)
    AutoModel.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec)).save_pretrained(tmp_path)
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "the": 4, "arm": 5}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(tmp_path)
    lam = lara.LatentActionModel(lara.LAMConfig(**{**SMALL, "quantizer": "none", "target": "vlm",
                                                   "target_model": str(tmp_path), "target_prompt": "the arm"}))
    assert lam.target_encoder.input_ids[0, -3:].tolist() == [2, 4, 5]  # BOS, then the prompt's own token ids
    assert lam.target_encoder(torch.rand(2, 3, 16, 16)).shape == (2, 1, 32)
