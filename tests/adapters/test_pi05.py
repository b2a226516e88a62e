"""pi0.5 (transformers PI05ForConditionalGeneration), on models built from small configs: `lara.attach` with
defaults, training, detach, save / load, its processor (the state discretised into the prompt as
PI05Processor writes it), and the posttrain_pi05 recipe run by `lara train` whose export `lara eval libero` runs
in a real LIBERO env."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import PI05ForConditionalGeneration

import lara
from lara.adapters.common import build_vla
from lara.adapters.config import load_recipe
from lara.adapters.metrics import read_metrics
from lara.cli import main as lara_main
from lara.data import EpisodeDataset
from lara.data.statistics import STATISTICS_FILE
from lara.errors import MissingPath
from lara.policy import load_policy
from lara.vla.pi0 import pi0_batch
from lara.vla.pi05 import Processor, discretize_state, pi05_config, tiny_pi05

from recipe_files import tiny, write_demos

LAM = dict(image_size=32, patch_size=8, width=32, heads=2, idm_layers=1, fdm_layers=1)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


def fixed_batch(cfg, batch_size: int = 4) -> dict:
    """Inputs with fixed flow noise and time (a deterministic loss), LAM frames and actions."""
    g = torch.Generator().manual_seed(1)
    return dict(pi0_batch(cfg, batch_size, text_len=5), noise=torch.randn(batch_size, cfg.chunk_size,
                                                                          cfg.max_action_dim, generator=g),
                timestep=torch.full((batch_size,), 0.5),
                lam_frames=torch.randint(0, 256, (batch_size, 2, 3, 32, 32), dtype=torch.uint8, generator=g),
                lam_actions=torch.randn(batch_size, 4, 7, generator=g))


def config(**kw) -> lara.LaraConfig:
    return lara.LaraConfig(lam=lara.LAMConfig(**LAM, action_horizon=4), **kw)


def test_pi05_attach_with_defaults_aligns_the_action_expert_at_the_action_chunk():
    torch.manual_seed(0)
    vla = tiny_pi05(chunk_size=4, expert_width=16)
    model = lara.attach(vla, lara.LaraConfig(lam=lara.LAMConfig(**LAM)))  # no backbone, no align settings
    assert model.spec.name == "pi05" and model.layer_name == "model.dit"
    align = model.config.align
    assert (align.positions, align.chunk, align.hidden_size, align.pool) == ("last_k", 4, 16, "last")
    out = model(**{k: v for k, v in fixed_batch(vla.config).items() if k != "lam_actions"})
    assert torch.isfinite(out.loss) and out.lara["align"] > 0 and out.lara["base"] > 0
    assert "state" not in pi0_batch(vla.config, 1)  # pi0.5 has no state input


def test_pi05_training_steps_lower_every_loss():
    torch.manual_seed(0)
    vla = tiny_pi05()
    model = lara.attach(vla, config(fdm_weight=0.5))
    batch = fixed_batch(vla.config)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(30):
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append({k: float(v) for k, v in out.lara.items()})
    for key in ("base", "align", "lam/recon", "lam/action", "fdm"):
        assert losses[-1][key] < losses[0][key], (key, losses[0][key], losses[-1][key])


def test_pi05_detach_returns_the_same_object_with_bitwise_equal_outputs():
    torch.manual_seed(0)
    vla = tiny_pi05()
    never_attached = copy.deepcopy(vla)
    batch = fixed_batch(vla.config)
    model = lara.attach(vla, config())
    model(**batch)
    base = lara.detach(model)
    assert base is vla
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in base.modules())
    inputs = {k: v for k, v in batch.items() if not k.startswith("lam_")}
    assert torch.equal(base(**inputs).logits, never_attached(**inputs).logits)
    sd, ref = base.state_dict(), never_attached.state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in sd)


def test_pi05_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    vla = tiny_pi05()
    model = lara.attach(vla, config())
    model(**fixed_batch(vla.config))
    lara.save(model, tmp_path / "lara")
    lara.detach(model).save_pretrained(tmp_path / "vla")
    reloaded = PI05ForConditionalGeneration.from_pretrained(tmp_path / "vla")
    loaded = lara.load(reloaded, tmp_path / "lara")
    assert loaded.config == model.config and loaded.spec.name == "pi05"
    for name in ("projector", "lam"):
        a, b = getattr(model, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    sd, ref = lara.detach(loaded).state_dict(), vla.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_pi05_prompt_is_pi05_processors_with_the_state_in_256_bins(demos):
    """The same text as transformers' PI05Processor.build_prompts for the q01/q99-normalised state."""
    from transformers.models.pi05.processing_pi05 import PI05Processor

    cfg = load_recipe("posttrain_pi05", tiny(demos, Path("unused"), family="pi05"))
    data = EpisodeDataset(cfg.data)
    processor = Processor(pi05_config(), data.statistics)
    proprio = torch.stack([data[i]["proprio"] for i in (0, 30)])  # (2, 8) raw
    stats = data.statistics.proprio
    q01, q99 = (torch.as_tensor(a, dtype=torch.float32) for a in (stats.q01, stats.q99))
    normalised = (2 * (proprio - q01) / (q99 - q01) - 1).clamp(-1, 1)
    fake = SimpleNamespace(image_token="", image_seq_length=0, tokenizer=SimpleNamespace(bos_token=""))
    expected = PI05Processor.build_prompts(fake, ["put_the bowl\non the plate"] * 2, [[None], [None]], normalised)
    ours = [processor.prompt("put_the bowl\non the plate", p) for p in proprio]
    assert ours == expected and ours[0] != ours[1]
    assert ours[0].startswith("Task: put the bowl on the plate, State: ") and ours[0].endswith(";\nAction: ")
    bins = discretize_state(proprio[0], data.statistics)
    assert len(bins) == 8 and all(0 <= b <= 255 for b in bins)
    assert discretize_state(q01 - 1, data.statistics) == [0] * 8  # clipped below the training range
    assert discretize_state(q99 + 1, data.statistics) == [255] * 8
    assert processor.prompt("open the drawer", None) == "Task: open the drawer;\nAction: "  # no state: no ", State"


def test_pi05_batches_carry_the_state_in_the_prompt_only(demos):
    cfg = load_recipe("posttrain_pi05", tiny(demos, Path("unused"), family="pi05"))
    data = EpisodeDataset(cfg.data)
    model, processor, _ = build_vla(cfg, data.statistics)
    samples = [data[i] for i in (0, 1)]
    batch = processor(samples)
    assert "state" not in batch and batch["actions"].shape == (2, 10, 8)
    moved = processor([dict(samples[0], proprio=samples[0]["proprio"] + 1.0), samples[1]])  # another robot state
    rows = lambda b, i: b["input_ids"][i][b["attention_mask"][i].bool()].tolist()  # noqa: E731 (unpadded)
    assert rows(moved, 0) != rows(batch, 0) and rows(moved, 1) == rows(batch, 1)
    for key in ("lam_frames", "lam_valid", "lam_actions", "lam_action_mask"):
        batch.pop(key)
    assert torch.isfinite(model(**batch).loss)
    video = EpisodeDataset(cfg.data.model_copy(update={"action_free": True}))
    free = processor([video[i] for i in range(2)])
    assert free["lam_action_free"] is True and not free["actions"].any()


@pytest.mark.slow
def test_posttrain_pi05_through_lara_train_exports_a_policy_lara_eval_libero_runs(demos, tmp_path):
    """`lara train posttrain_pi05` (LoRA, EMA, LARA) -> RUN/final/vla, a pi0.5 with its statistics beside it ->
    `lara eval libero --policy checkpoint:RUN/final/vla` for one short episode in LIBERO."""
    run = tmp_path / "run"
    assert lara_main(["train", "posttrain_pi05", *tiny(demos, run, steps=3, every=3, family="pi05")]) == 0
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["base"] > 0 and r["align"] > 0 for r in records)
    vla = run / "final" / "vla"
    assert json.loads((vla / "config.json").read_text())["model_type"] == "pi05"
    assert (vla / STATISTICS_FILE).is_file()  # the folder alone is a policy
    assert not any("lora" in k for k in load_file(vla / "model.safetensors"))  # LoRA merged
    policy = load_policy(f"checkpoint:{vla}")
    policy.reset("put the bowl on the plate")
    obs = {"agentview_rgb": np.zeros((64, 64, 3), np.uint8), "ee_pos": np.zeros(3), "ee_ori": np.zeros(3),
           "gripper_qpos": np.zeros(2)}
    chunk = policy.act(obs)
    assert chunk.shape == (10, 7) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    out = tmp_path / "eval"
    assert lara_main(["eval", "libero", "--policy", f"checkpoint:{vla}", "--suite", "object", "--tasks", "0",
                      "--trials", "1", "--max-steps", "3", "--no-video", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    episode = results["tasks"][0]["episodes"][0]
    assert episode["failure_reason"] is None and episode["steps"] == 3 and episode["chunks"] == 1
    assert results["protocol"]["camera_size"] == 32  # the size it was trained at


def test_a_pi05_saved_without_statistics_is_refused_in_one_line(tmp_path):
    torch.manual_seed(0)
    tiny_pi05().save_pretrained(tmp_path / "vla")
    with pytest.raises(MissingPath, match=r"no dataset_statistics.json in .*copy the training data's "
                                         r"dataset_statistics.json there"):
        load_policy(f"checkpoint:{tmp_path / 'vla'}")
