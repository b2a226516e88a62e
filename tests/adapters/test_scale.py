"""Real-model settings on tiny models: bf16 loading, gradient checkpointing with the LARA hook."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import lara
from lara.adapters import posttrain
from lara.adapters.common import enable_gradient_checkpointing, native_bf16
from lara.adapters.config import load_recipe
from lara.adapters.metrics import read_metrics
from lara.vla.backbones import backbone
from lara.vla.pi0 import pi0_batch, pi0_config, tiny_pi0
from lara.vla.pi05 import pi05_config, tiny_pi05
from lara.vla.token_vla import preprocess_images, tiny_token_vla
from lara.vla.token_vla.tokenizer import build_example, collate

from openvla_standin import write_openvla_standin
from recipe_files import tiny, write_demos

LAM = lara.LAMConfig(image_size=32, width=32, idm_layers=1, fdm_layers=1, quantizer="fsq")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


def token_vla_case(layer: str | None):
    torch.manual_seed(0)
    vla = tiny_token_vla(width=32, layers=4)
    frames = torch.randint(0, 256, (4, 2, 3, 32, 32), dtype=torch.uint8)
    batch = collate([build_example("pick up the bowl", row)
                     for row in vla.action_tokenizer.encode(np.random.default_rng(0).uniform(-1, 1, (4, 7)))])
    batch.update(pixel_values=preprocess_images(frames[:, 0], 32), lam_frames=frames)
    align = lara.AlignConfig(layer=layer, hidden_size=32) if layer else lara.AlignConfig()
    return vla, batch, lara.LaraConfig(backbone="token_vla", align=align, align_weight=1.0, lam=LAM)


def pi0_case(layer: str | None):
    torch.manual_seed(0)
    cfg = pi0_config(layers=3)
    batch = pi0_batch(cfg, 4)
    batch["lam_frames"] = torch.randint(0, 256, (4, 2, 3, 32, 32), dtype=torch.uint8)
    align = lara.AlignConfig(layer=layer, hidden_size=32) if layer else lara.AlignConfig()
    return tiny_pi0(layers=3), batch, lara.LaraConfig(backbone="pi0", align=align, align_weight=1.0, lam=LAM)


def pi05_case(layer: str | None):
    torch.manual_seed(0)
    batch = pi0_batch(pi05_config(layers=3), 4)  # no state: pi0.5 reads it in its prompt
    batch["lam_frames"] = torch.randint(0, 256, (4, 2, 3, 32, 32), dtype=torch.uint8)
    align = lara.AlignConfig(layer=layer, hidden_size=32) if layer else lara.AlignConfig()
    return tiny_pi05(layers=3), batch, lara.LaraConfig(backbone="pi05", align=align, align_weight=1.0, lam=LAM)


def loss_and_gradients(vla, batch, config, checkpointing: str | None):
    vla = copy.deepcopy(vla)
    for module in backbone(config.backbone).glue.checkpointed_modules(vla):  # what train.gradient_checkpointing=true does
        if checkpointing == "non-reentrant":
            enable_gradient_checkpointing(module)
        elif checkpointing == "reentrant":
            module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    torch.manual_seed(1)  # the LAM's and projector's initialisation; pi0's flow noise and time
    model = lara.attach(vla, config).train()
    out = model(**dict(batch))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


# the hooked module: a whole checkpointed block (transformers >= 5 checkpoints inside the module's hooks), or a
# module inside one, whose output the backward pass recomputes (pi0: its checkpointed SigLIP tower's blocks;
# the default hook, the action expert, is not recomputed)
CASES = {"token_vla block": (token_vla_case, None),
         "token_vla inside a block": (token_vla_case, "language_model.model.layers.2.mlp"),
         "pi0 expert": (pi0_case, None),
         "pi0 inside a vision block": (pi0_case, "model.vlm.vision_tower.encoder.layers.0.mlp"),
         "pi05 expert": (pi05_case, None),
         "pi05 inside a vision block": (pi05_case, "model.vlm.vision_tower.encoder.layers.0.mlp")}


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_checkpointing_gives_the_same_lara_loss_and_gradients(case):
    build, layer = CASES[case]
    vla, batch, config = build(layer)
    loss, grads = loss_and_gradients(vla, batch, config, None)
    loss_gc, grads_gc = loss_and_gradients(vla, batch, config, "non-reentrant")
    assert float(out_align(vla, batch, config)) > 0.1  # the alignment term is a real part of the loss
    torch.testing.assert_close(loss_gc, loss, rtol=0, atol=1e-6)
    assert grads_gc.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_gc[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    if layer is not None and "inside" in case:
        # why the trainer insists on non-reentrant checkpointing: the reentrant kind runs the block under no_grad,
        # the hidden state captured inside it carries no gradient, and the alignment stops reaching the VLA
        _, grads_re = loss_and_gradients(vla, batch, config, "reentrant")
        differs = [n for n in grads if n in grads_re and not torch.allclose(grads_re[n], grads[n], atol=1e-7)]
        assert differs and all(n.startswith("base.") for n in differs)


def out_align(vla, batch, config) -> torch.Tensor:
    with torch.no_grad():
        return lara.attach(copy.deepcopy(vla), config)(**dict(batch)).lara["align"]


def bf16_run(demos: Path, out: Path, family: str, *extra: str) -> dict:
    overrides = tiny(demos, out, steps=2, every=2, family=family) + ["model.dtype=bf16", *extra]
    return posttrain.run(load_recipe(f"posttrain_{family}", overrides))


def dtypes(path: Path) -> set[torch.dtype]:
    return {v.dtype for v in load_file(path).values() if v.is_floating_point()}


@pytest.mark.parametrize("family", ["pi0", "openvla", "pi05"])
def test_bf16_loading_trains_the_vla_in_bf16_beside_an_fp32_lam(demos, tmp_path, family):
    if family in ("pi0", "pi05"):  # a saved fp32 checkpoint, loaded in bf16 as openpi loads pi0
        source = tmp_path / family
        (tiny_pi0 if family == "pi0" else tiny_pi05)(**{"width": 32, "expert_width": 16, "layers": 1,
                                                         "image_size": 32, "chunk_size": 10,
                                                         "vocab_size": 512}).save_pretrained(source)
        extra = [f"model.path={source}"]
    else:
        source = write_openvla_standin(tmp_path / "openvla-standin")
        extra = [f"model.path={source}", "lara.align.layer=language_model.model.layers.1"]
    assert dtypes(next(source.glob("*.safetensors"))) == {torch.float32}
    result = bf16_run(demos, tmp_path / "run", family, *extra, "model.build={}")
    final = result["final"]
    assert dtypes(next((final / "vla").glob("*.safetensors"))) == {torch.bfloat16}  # trained and saved in bf16
    assert dtypes(final / "lara" / "lara.safetensors") == {torch.float32}  # lara.dtype's default
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) and r["align"] > 0 for r in records)
    if family in ("pi0", "pi05"):  # the bf16 export serves as a policy (its inputs cast to the weights' dtype)
        from lara.vla import load_policy

        policy = load_policy(final / "vla")
        policy.reset("put the bowl on the plate")
        image = np.zeros((32, 32, 3), np.uint8)
        chunk = policy.act({"agentview_rgb": image, "ee_pos": np.zeros(3), "ee_ori": np.zeros(3),
                            "gripper_qpos": np.zeros(2)})
        assert next(policy.model.parameters()).dtype == torch.bfloat16 and np.isfinite(chunk).all()


def test_lara_dtype_puts_the_lam_and_projector_in_bf16_and_keeps_vq_statistics_fp32(demos, tmp_path):
    emulated = pytest.warns(UserWarning, match="without native bf16.*emulated")
    with contextlib.nullcontext() if native_bf16() else emulated:
        bf16_run(demos, tmp_path, "token_vla", "lara.dtype=bf16", "lara.lam.quantizer=vq")
    saved = load_file(tmp_path / "final" / "lara" / "lara.safetensors")
    floating = {k: v.dtype for k, v in saved.items() if v.is_floating_point()}
    assert {k for k, d in floating.items() if d == torch.float32} == {
        "lam.quantizer.codebook", "lam.quantizer.ema_count", "lam.quantizer.ema_sum"}
    assert floating["projector.weight"] == floating["lam.idm.embed.weight"] == torch.bfloat16


def test_recipe_with_gradient_checkpointing_logs_the_same_losses(demos, tmp_path):
    runs = {}
    for name, flag in (("plain", "false"), ("checkpointed", "true")):
        overrides = tiny(demos, tmp_path / name, steps=3, every=3) + [f"train.gradient_checkpointing={flag}"]
        posttrain.run(load_recipe("posttrain_token_vla", overrides))
        runs[name] = [{k: v for k, v in r.items() if k != "samples_per_s"}
                      for r in read_metrics(tmp_path / name / "metrics.jsonl")]
    assert len(runs["plain"]) == 3
    for plain, checkpointed in zip(runs["plain"], runs["checkpointed"]):
        assert checkpointed == pytest.approx(plain, rel=1e-5, abs=1e-7)


def test_gpu_validation_script_dry_run(tmp_path):
    """benchmarks/gpu/validate.sh at tiny sizes on the CPU: the code path the GPU run takes, end to end."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "validate.json"
    done = subprocess.run(["bash", "benchmarks/gpu/validate.sh", "--dry-run", "--out", str(out), "--repeats", "1",
                           "--warmup", "1", "--gradient-checkpointing"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    assert done.stdout.strip().splitlines()[-1].startswith("gpu-validate ok=4/4 step_ratio pi0-3b/lora=")
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["gradient_checkpointing"]
    assert [(c["model"], c["mode"]) for c in report["cases"]] == [
        ("pi0-3b", "lora"), ("pi0-3b", "full"), ("openvla-7b", "lora"), ("openvla-7b", "full")]
    for case in report["cases"]:
        assert case["base"]["step_ms"] > 0 and case["lara"]["step_ms"] > 0 and case["step_ratio"] > 0
        assert case["lara_params"] > 0
        if case["mode"] == "lora":  # the VLA's own weights frozen, the adapters trained
            assert 0 < case["trainable_vla_params"] < case["vla_params"]
        else:
            assert case["trainable_vla_params"] == case["vla_params"]


def test_bf16_lam_on_frozen_vision_features_trains():
    """A feature LAM's frozen vision model stays fp32; its tokens enter the bf16 LAM in the LAM's dtype."""
    dinov2 = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, image_size=32, patch_size=8)
    lam = lara.LAMConfig(input="features", target="features", vision_model=dinov2, width=32, heads=2,
                         idm_layers=1, fdm_layers=1)
    vla, batch, _ = token_vla_case(None)
    model = lara.attach(vla, lara.LaraConfig(lam=lam, dtype="bf16"))
    out = model(**batch)
    out.loss.backward()
    assert model.lam.idm.embed.weight.grad.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    assert next(model.lam.tokenizer.vision.parameters()).dtype == torch.float32
