"""The pi0 family: its preset trains with LoRA and LARA, exports a merged pi0 that acts as a LIBERO policy,
and a resumed run repeats the uninterrupted one exactly although pi0 draws flow noise inside forward."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import PI0ForConditionalGeneration

from lara.adapters import posttrain
from lara.adapters.config import load_recipe
from lara.adapters.common import build_vla
from lara.adapters.metrics import read_metrics
from lara.adapters.trainer import seed_everything
from lara.benchmarks.rollout import check_chunk
from lara.data import EpisodeDataset
from lara.policy import load_policy
from lara.vla.pi0 import pi0_config
from lara.vla.token_vla import tiny_token_vla

from recipe_files import TINY_BUILD, tiny, write_demos

LORA_SCALE = 32 / 16  # the preset's lora alpha / r


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


@pytest.fixture(scope="module")
def pi0_run(demos, tmp_path_factory) -> dict:
    """posttrain_pi0 shrunk to a 32-px pi0, three steps (LoRA r=16 and EMA as in the preset)."""
    out = tmp_path_factory.mktemp("pi0") / "run"
    return posttrain.run(load_recipe("posttrain_pi0", tiny(demos, out, steps=3, every=3, family="pi0")))


def libero_obs(seed: int = 0) -> dict:
    """What LiberoEnv.observation() returns: 256 px upright cameras and the robot state."""
    rng = np.random.default_rng(seed)
    image = lambda: rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # noqa: E731
    return {"agentview_rgb": image(), "eye_in_hand_rgb": image(), "ee_pos": rng.normal(size=3),
            "ee_ori": rng.normal(size=3), "gripper_qpos": rng.normal(size=2), "joint_qpos": rng.normal(size=7),
            "instruction": "put the bowl on the plate"}


def test_pi0_preset_trains_with_lara_and_lora(pi0_run):
    records = read_metrics(pi0_run["final"].parent / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["base"] > 0 and r["align"] > 0 for r in records)
    adapter = pi0_run["checkpoint"] / "vla"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16
    lora = load_file(adapter / "adapter_model.safetensors")
    assert any(".model.dit." in k for k in lora) and any(".model.vlm." in k for k in lora)  # expert and VLM


def test_final_export_is_pi0_with_the_lora_adapters_merged(pi0_run):
    final = pi0_run["final"] / "vla"
    assert json.loads((final / "config.json").read_text())["model_type"] == "pi0"
    assert not any("lora" in k for k in load_file(final / "model.safetensors"))
    merged = PI0ForConditionalGeneration.from_pretrained(final).state_dict()
    seed_everything(0)  # the recipe's seed: the same initial weights
    initial = PI0ForConditionalGeneration(pi0_config(**yaml.safe_load(TINY_BUILD["pi0"]))).state_dict()
    # the last checkpoint's adapter holds the same (EMA) weights as the final export
    lora = load_file(pi0_run["checkpoint"] / "vla" / "adapter_model.safetensors")
    name = "model.dit.layers.0.self_attn.q_proj"
    a, b = (lora[f"base_model.model.{name}.lora_{x}.weight"] for x in "AB")
    assert b.abs().max() > 0  # the adapter trained
    torch.testing.assert_close(merged[f"{name}.weight"], initial[f"{name}.weight"] + LORA_SCALE * b @ a)


def test_pi0_policy_acts_on_a_libero_observation(pi0_run):
    policy = load_policy(f"checkpoint:{pi0_run['final'] / 'vla'}")  # what `lara eval libero` loads
    policy.reset("put the bowl on the plate")
    chunk = policy.act(libero_obs())
    assert check_chunk(chunk) is None and chunk.shape == (10, 7) and chunk.dtype == np.float32
    # un-normalised with the run's statistics: the demos never move in z / rotation (q01 == q99 there), so
    # whatever pi0 samples for those dimensions maps back to that constant
    statistics = json.loads((pi0_run["final"] / "dataset_statistics.json").read_text())["libero"]["action"]
    assert statistics["q01"][2:6] == statistics["q99"][2:6]
    np.testing.assert_allclose(chunk[:, 2:6], np.broadcast_to(statistics["q01"][2:6], (10, 4)), atol=1e-6)
    other = dict(libero_obs(), agentview_rgb=libero_obs(1)["agentview_rgb"])
    policy.generator.manual_seed(0)
    first = policy.act(libero_obs())
    policy.generator.manual_seed(0)
    assert not np.allclose(first, policy.act(other))  # the image reaches the actions


def test_pi0_collate_of_video_samples_is_action_free(demos, pi0_run):
    cfg = load_recipe("posttrain_pi0", tiny(demos, Path("unused"), family="pi0") + ["data.action_free=true"])
    video = EpisodeDataset(cfg.data)
    _, processor, _ = build_vla(cfg, None)
    batch = processor([video[i] for i in range(3)])
    assert batch["lam_action_free"] is True and "lam_actions" not in batch
    assert batch["actions"].shape == (3, 10, 8) and not batch["actions"].any() and not batch["state"].any()
    assert batch["pixel_values"].shape == (3, 1, 3, 32, 32) and batch["pixel_values"].min() >= -1
    n_image = (32 // 8) ** 2
    assert (batch["input_ids"][:, :n_image] == 511).all() and (batch["input_ids"][:, n_image:] != 511).all()


def test_pi0_sees_every_configured_camera(demos):
    cfg = load_recipe("posttrain_pi0", tiny(demos, Path("unused"), family="pi0")
                      + ["data.extra_cameras=[eye_in_hand_rgb]"])
    data = EpisodeDataset(cfg.data)
    model, processor, _ = build_vla(cfg, data.statistics)  # data.camera, then data.extra_cameras
    batch = processor([data[i] for i in range(2)])
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32) and batch["pixel_attention_mask"].all()
    assert (batch["input_ids"] == 511).sum(1).tolist() == [2 * 16, 2 * 16]  # 16 patches per camera
    assert not torch.equal(batch["pixel_values"][:, 0], batch["pixel_values"][:, 1])
    assert model.config.lara_cameras == ["agentview_rgb", "eye_in_hand_rgb"]  # what the policy will read
    batch.pop("lam_frames"), batch.pop("lam_valid"), batch.pop("lam_actions"), batch.pop("lam_action_mask")
    assert torch.isfinite(model(**batch).loss)


def test_pi0_from_a_path_uses_the_tokenizer_saved_there(demos, tmp_path):
    """A converted pi0 checkpoint comes with its tokenizer: training, export and the policy all use it."""
    from openvla_standin import standin_tokenizer  # any Llama-style sentencepiece tokenizer will do

    seed_everything(0)
    build = dict(yaml.safe_load(TINY_BUILD["pi0"]), vocab_size=32064)
    PI0ForConditionalGeneration(pi0_config(**build)).save_pretrained(tmp_path / "pi0")
    tokenizer = standin_tokenizer()
    tokenizer.save_pretrained(tmp_path / "pi0")
    cfg = load_recipe("posttrain_pi0", tiny(demos, tmp_path / "run", steps=1, every=1, family="pi0")
                      + [f"model.path={tmp_path / 'pi0'}", "model.lora=null"])
    _, processor, _ = build_vla(cfg, None)
    ids = processor([EpisodeDataset(cfg.data)[0]])["input_ids"][0, 16:].tolist()  # after the image tokens
    assert ids == tokenizer("<s>put the bowl on the plate\n", add_special_tokens=False)["input_ids"]
    final = posttrain.run(cfg)["final"] / "vla"
    assert (final / "tokenizer.json").is_file()
    policy = load_policy(f"checkpoint:{final}")
    assert policy.inputs.tokenizer is not None
    policy.reset("put the bowl on the plate")
    assert check_chunk(policy.act(libero_obs())) is None


def test_resumed_pi0_run_repeats_the_uninterrupted_losses(demos, tmp_path):
    """A run resumed from step 4 of 6 logs the same values bit for bit (flow noise and time included)."""
    overrides = tiny(demos, tmp_path / "run", steps=6, every=2, family="pi0") + ["train.keep_checkpoints=3"]
    posttrain.run(load_recipe("posttrain_pi0", overrides))
    straight = read_metrics(tmp_path / "run" / "metrics.jsonl")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_000006")  # as if killed after step 4's checkpoint
    torch.manual_seed(123)  # a different global RNG state than the run had: the checkpoint must restore it
    posttrain.run(load_recipe("posttrain_pi0", overrides))
    resumed = read_metrics(tmp_path / "run" / "metrics.jsonl")
    drop = lambda records: [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]  # noqa: E731
    assert [r["step"] for r in resumed] == list(range(1, 7))
    assert drop(resumed) == drop(straight)


@pytest.mark.parametrize("make, message", [
    (lambda path: None, r"model.path=.*model: no such folder; expected a VLA folder saved by save_pretrained "
                        r"\(config.json and its weights\), e.g. RUN/final/vla \(or leave model.path unset to build a "
                        r"pi0 from model.build\)"),
    (lambda path: path.mkdir(), r"model.path=.*model holds no config.json; expected a VLA folder"),
    (lambda path: tiny_token_vla().save_pretrained(path), r"holds a 'lara_token_vla' model, but model.family='pi0'"),
])
def test_a_wrong_model_path_says_what_was_expected(demos, tmp_path, make, message):
    make(tmp_path / "model")
    cfg = load_recipe("posttrain_pi0", tiny(demos, tmp_path / "run", family="pi0") + [f"model.path={tmp_path / 'model'}"])
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        posttrain.run(cfg)
