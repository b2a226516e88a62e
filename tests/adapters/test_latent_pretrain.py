"""Latent-action pre-training (LAPA): the TokenVLA learns a LAM's codes as extra tokens, then posttrain continues."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lara
from lara.adapters import latent_pretrain, posttrain
from lara.adapters.config import load_recipe
from lara.adapters.metrics import read_metrics
from lara.cli import main as lara_main
from lara.config import LAMConfig
from lara.data import EpisodeDataset
from lara.data.libero_writer import LiberoHDF5Writer
from lara.errors import InputError, MissingPath
from lara.vla import load_policy
from lara.vla.token_vla import tiny_token_vla
from lara.vla.token_vla import TokenVLA

from recipe_files import tiny, write_demos

SIZE = 32
LAM = dict(image_size=SIZE, patch_size=8, width=32, idm_layers=1, fdm_layers=1, latent_tokens=2, codebook_size=8)


def write_fades(directory: Path) -> Path:
    """A scene brightened ("brighten the scene") or darkened ("darken the scene") by 6 grey levels a frame from a
    random level: o_{t+k} follows from o_t and the instruction, so the codes of any LAM are predictable from them."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for direction, verb in ((1, "brighten"), (-1, "darken")):
        with LiberoHDF5Writer(directory / f"{verb}_demo.hdf5", language=f"{verb} the scene") as writer:
            for _ in range(4):
                T = 12
                grey = np.clip(rng.integers(60, 190) + 6 * direction * np.arange(T), 0, 255)  # (T,)
                frames = np.broadcast_to(grey[:, None, None, None], (T, SIZE, SIZE, 3)).astype(np.uint8)
                writer.add_demo(actions=rng.normal(0, 0.05, (T, 7)), agentview_rgb=frames, eye_in_hand_rgb=frames,
                                ee_states=np.zeros((T, 6)), gripper_states=np.zeros((T, 2)),
                                joint_states=np.zeros((T, 7)), attrs={"success": True})
    return directory


def lam_with_data_codebook(data_dir: Path, out: Path) -> Path:
    """A fresh vq LAM after one forward pass in training mode over the pairs, which starts its codebook from their
    latents (what vq does on its first training batch) so the pairs spread over its codes; saved as an artifact."""
    torch.manual_seed(0)
    data = EpisodeDataset(paths=[data_dir], frame_gap=3, image_size=SIZE, action_free=True, drop_incomplete=True)
    lam = lara.LatentActionModel(LAMConfig(**LAM))
    with torch.no_grad():
        lam(torch.stack([data[i]["lam_frames"] for i in range(len(data))]).float() / 255.0)
    return lara.save_lam(lam, out)


def latent_args(data: Path, out: Path, lam: Path, steps: int) -> list[str]:
    return tiny(data, out, steps=steps, every=steps) + [f"latent.lam_from={lam}", "data.frame_gap=3"]


@pytest.fixture(scope="module")
def fades(tmp_path_factory) -> Path:
    return write_fades(tmp_path_factory.mktemp("fades"))


def test_code_accuracy_rises_above_chance_and_posttrain_continues_on_actions(fades, tmp_path):
    lam = lam_with_data_codebook(fades, tmp_path / "lam")
    args = latent_args(fades, tmp_path / "latent", lam, steps=100) + ["train.lr=3e-3", "train.log_every=10",
                                                                      "train.batch_size=16", "train.schedule=constant"]
    result = latent_pretrain.run(load_recipe("latent_pretrain_token_vla", args))
    assert result["codes"] == 8 and result["tokens_per_pair"] == 2 and result["pairs"] == 8 * (12 - 3)
    assert result["chance"] < 0.5 and result["code_usage"] == 1.0  # varied labels: a constant guess reaches < 50 %
    records = read_metrics(tmp_path / "latent" / "metrics.jsonl")
    assert all(r["latent/chance"] == pytest.approx(result["chance"]) for r in records)
    assert records[0]["latent/accuracy"] < result["chance"] + 0.1
    assert records[-1]["latent/accuracy"] > result["chance"] + 0.3  # it reads the codes off o_t and the instruction
    final = result["final"]
    written = json.loads((final / "latent_codes.json").read_text())
    assert written["accuracy_last_logged"] == records[-1]["latent/accuracy"]
    assert lara.load_lam(final / "lam").cfg == lara.load_lam(lam).cfg

    # the code rows follow the action bins, which keep the ids of a model without them
    vla = TokenVLA.from_pretrained(final / "vla")
    fresh = tiny_token_vla(width=32, layers=1, image_size=SIZE)  # what posttrain builds from scratch here
    assert vla.config.latent_codes == 8 and vla.first_code_id == fresh.config.text_config.vocab_size
    assert vla.config.text_config.vocab_size == fresh.config.text_config.vocab_size + 8
    assert (vla.action_tokenizer.first_id, vla.action_tokenizer.last_id) == (fresh.action_tokenizer.first_id,
                                                                              fresh.action_tokenizer.last_id)
    embeddings = vla.language_model.get_input_embeddings().weight

    # posttrain from it drops the code rows and keeps every other trained row
    post = posttrain.run(load_recipe("posttrain_token_vla", tiny(fades, tmp_path / "post", steps=1, every=1)
                                     + [f"model.path={final / 'vla'}", "baseline=true",
                                        "train.lr=1e-12", "train.warmup_steps=0"]))
    policy = load_policy(post["final"] / "vla")
    assert policy.model.config.latent_codes == 0
    kept = policy.model.language_model.get_input_embeddings().weight
    assert kept.shape[0] == embeddings.shape[0] - 8 and torch.allclose(kept, embeddings[:-8], atol=1e-6)
    policy.reset("brighten the scene")
    assert policy.act({"agentview_rgb": np.zeros((SIZE, SIZE, 3), np.uint8)}).shape == (1, 7)


def test_a_lam_trained_in_the_recipe_labels_a_video_folder_and_a_collapsed_one_is_named(tmp_path):
    pytest.importorskip("av")
    videos = tmp_path / "videos"
    assert lara_main(["data", "videos", str(write_demos(tmp_path / "demos")), str(videos), "--fps", "10"]) == 0
    args = tiny(videos, tmp_path / "run", steps=2, every=2) + ["latent.lam_steps=2", "data.frame_gap=3",
                                                              "lara.lam.codebook_size=8", "lara.lam.latent_tokens=2"]
    with pytest.warns(UserWarning, match="a collapsed LAM"):  # two reconstruction steps give a single code
        result = latent_pretrain.run(load_recipe("latent_pretrain_token_vla", args))
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "lam" / "metrics.jsonl")] == [1, 2]
    assert result["lam"] == str(tmp_path / "run" / "lam") and TokenVLA.from_pretrained(
        result["final"] / "vla").config.latent_codes == 8
    assert (tmp_path / "run" / "latent_codes.pt").is_file()
    with pytest.warns(UserWarning, match="a collapsed LAM"):
        again = latent_pretrain.run(load_recipe("latent_pretrain_token_vla", args))  # finished: nothing retrains
    assert again["checkpoint"] == result["checkpoint"]


@pytest.mark.parametrize("extra, error, message", [
    (["model.family=pi0"], InputError, "latent_pretrain trains a TokenVLA on LAM code tokens"),
    (["lara.lam.quantizer=none"], InputError, "lara.lam.quantizer='none' has none"),
    (["latent.lam_steps=0"], InputError, "would label the frames with an untrained LAM"),
])
def test_config_errors_name_what_to_set(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        load_recipe("latent_pretrain_token_vla", [f"output_dir={tmp_path}", *extra])


def test_a_lam_from_that_is_no_artifact_is_named(fades, tmp_path):
    with pytest.raises(MissingPath, match=r"latent.lam_from=.* holds no lara.safetensors"):
        latent_pretrain.run(load_recipe("latent_pretrain_token_vla", latent_args(fades, tmp_path / "r",
                                                                                 tmp_path / "nowhere", steps=1)))
