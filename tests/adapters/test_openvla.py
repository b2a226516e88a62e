"""The openvla family on a tiny stand-in checkpoint (remote code, OpenVLA's module paths, processor layout and
action-token ids; tests/adapters/openvla_standin): real OpenVLA weights cannot be downloaded here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lara.adapters import posttrain
from lara.adapters.config import load_recipe
from lara.adapters.common import build_vla
from lara.adapters.metrics import read_metrics
from lara.data import EpisodeDataset
from lara.vla.openvla import load_openvla, load_openvla_processor, prompt
from lara.vla.token_vla import tiny_token_vla
from lara.vla.token_vla.tokenizer import IGNORE_INDEX

from openvla_standin import write_openvla_standin
from recipe_files import tiny, write_demos

LAYER = "lara.align.layer=language_model.model.layers.1"  # the stand-in has 2 LLM layers (OpenVLA: 32, layer 24)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_demos(tmp_path_factory.mktemp("demos"))


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return write_openvla_standin(tmp_path_factory.mktemp("openvla") / "openvla-standin")


def openvla_recipe(demos: Path, out: Path, model: Path, *extra: str):
    overrides = tiny(demos, out, steps=2, every=2, family="openvla")
    return load_recipe("posttrain_openvla", overrides + [f"model.path={model}", LAYER, *extra])


def test_batches_are_openvla_finetune_batches(demos, standin, tmp_path):
    cfg = openvla_recipe(demos, tmp_path, standin)
    data = EpisodeDataset(cfg.data)
    _, processor, _ = build_vla(cfg, data.statistics)
    samples = [data[i] for i in (0, 40, 80)]
    batch = processor(samples)
    tokenizer = processor.tokenizer
    for row, sample in enumerate(samples):
        length = int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row, :length].tolist(), batch["labels"][row, :length].tolist()
        head = tokenizer(prompt(sample["instruction"]))["input_ids"]
        assert ids[: len(head)] == head and ids[0] == tokenizer.bos_token_id
        assert ids[len(head)] == tokenizer.convert_tokens_to_ids("▁") and ids[-1] == tokenizer.eos_token_id
        actions = ids[len(head) + 1 : -1]
        assert len(actions) == 7 and all(31744 <= t <= 31999 for t in actions)  # Llama-2's last 256 ids
        assert labels == [IGNORE_INDEX] * (length - 8) + actions + [tokenizer.eos_token_id]
        # the gripper (-1 open / +1 closed, not normalised) lands on the first / last bin
        assert actions[6] == (31999 if sample["actions"][0, 6] < 0 else 31744)
        assert (batch["input_ids"][row, length:] == tokenizer.pad_token_id).all()
    assert "put the bowl on the plate" in tokenizer.decode(batch["input_ids"][0])
    assert batch["pixel_values"].shape == (3, 3, 32, 32)


def test_openvla_preset_trains_and_exports_a_merged_openvla(demos, standin, tmp_path):
    result = posttrain.run(openvla_recipe(demos, tmp_path / "run", standin))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["base"] > 0 and r["align"] > 0 for r in records)
    adapter = result["checkpoint"] / "vla"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 32  # the preset's LoRA
    assert any("language_model.model.layers.1" in k and "lora_B" in k
               for k in load_file(adapter / "adapter_model.safetensors"))

    final = result["final"] / "vla"
    assert not any("lora" in k for k in load_file(final / "model.safetensors"))
    model = load_openvla(final)  # trust_remote_code from the export, as from the original checkpoint
    processor = load_openvla_processor(final)  # as OpenVLA's AutoProcessor would from the original
    assert model.config.model_type == "openvla" and processor.tokenizer.vocab_size == 32000
    statistics = json.loads((result["final"] / "dataset_statistics.json").read_text())["libero"]
    assert model.config.norm_stats["libero"]["action"]["q99"] == statistics["action"]["q99"]
    original = load_openvla(standin).state_dict()
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, original[k])]
    assert any("language_model.model.layers" in k for k in moved)  # the merged LoRA changed the weights


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), r"holds no config.json; expected a VLA folder saved by save_pretrained"),
    (lambda path: tiny_token_vla().save_pretrained(path), r"holds a 'lara_token_vla' model, but model.family='openvla'"),
])
def test_a_wrong_model_path_says_what_was_expected(demos, tmp_path, make, message):
    make(tmp_path / "model")
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        posttrain.run(openvla_recipe(demos, tmp_path / "run", tmp_path / "model"))


def test_image_dependence_runs_on_openvlas_config_layout(standin):
    """OpenVLAConfig has `image_sizes` and `use_fused_vision_backbone`, no `vision_config`, and OpenVLA's prompt
    must come from its own Llama tokenizer (saved beside it), not TokenVLA's byte tokens."""
    from lara.vla.checks import image_dependence
    from lara.vla.token_vla.tokenizer import prompt as policy_prompt

    model = load_openvla(standin)
    del model.config.vision_config  # the stand-in's network is built; its config now reads as OpenVLA's does
    model.config.image_sizes, model.config.use_fused_vision_backbone = [32, 32], False
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    assert image_dependence(model) > 0
    expected = load_openvla_processor(standin).tokenizer(
        policy_prompt("pick up the object"))["input_ids"]
    assert [call["input_ids"][0].tolist() for call in seen] == [expected, expected]
    assert seen[0]["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        model.projector.fc2.weight.zero_()
        model.projector.fc2.bias.zero_()
    with pytest.raises(RuntimeError, match="do not depend on the image"):
        image_dependence(model)


def test_remote_code_that_does_not_import_names_the_transformers_it_needs(demos, standin, tmp_path):
    """OpenVLA's processing_prismatic imports names transformers 5 removed: one line, not a traceback."""
    import shutil

    broken = tmp_path / "openvla-broken"
    shutil.copytree(standin, broken)
    code = next(broken.glob("processing_*.py"))
    code.write_text("import lara_no_such_package\n" + code.read_text())
    with pytest.raises(ValueError, match=r"remote code \(processing_.*\) does not import under transformers .* "
                                         r"transformers 4\.40\.x"):
        posttrain.run(openvla_recipe(demos, tmp_path / "run", broken))
