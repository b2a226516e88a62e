"""OpenVLA (and OpenVLA-OFT) from a local checkpoint, fed as OpenVLA's own fine-tuning feeds it.

The model and processor load with `trust_remote_code=True` (the checkpoint's modeling_prismatic /
processing_prismatic run), local files only. A batch is what OpenVLA's vla-scripts/finetune.py builds with
prismatic's RLDSBatchTransform and PaddedCollatorForActionPrediction:

    input_ids   [BOS] "In: What action should the robot take to {instruction}?\\nOut:" "▁" a_1 .. a_7 [EOS]
    labels      IGNORE everywhere but the 7 action tokens and EOS
    pixel_values  the processor's image transform of each image (OpenVLA: SigLIP + DINOv2, 6 channels)

with a_i = ActionTokenizer on the q01/q99-normalised action: 256 uniform bins on [-1, 1], bin b is token id
`tokenizer.vocab_size - b` (31744..31999 for Llama-2), right padding with the tokenizer's pad id. The
training statistics go into `config.norm_stats[dataset]` (what OpenVLA's predict_action un-normalises with)
and, as for every backbone, beside the weights as dataset_statistics.json (lara.vla.backbones.export_vla).

Verified on a tiny stand-in checkpoint with OpenVLA's model_type, module paths, processor layout and token
ids (tests/adapters/openvla_standin); real OpenVLA weights are unverified here (they cannot be downloaded).
OpenVLA's remote code needs transformers 4.40 (`.venv-tf440`): under transformers >= 4.50 it silently drops
the vision tower (lara.vla.checks.image_dependence catches that), and from transformers 5 on its
processing_prismatic imports names transformers removed. Both loaders below follow transformers 5 where the
code they load still can (the stand-in's does), so the family is tested on both lines.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from lara.errors import InputError, MissingPath
from lara.policy import ACTION_DIM
from lara.vla.batch import IGNORE_INDEX, cast, lara_inputs, load_kwargs, prompt, right_pad
from lara.vla.token_vla.tokenizer import ActionTokenizer

AUTO_CLASS = "AutoModelForVision2Seq"  # the auto_map entry of OpenVLA's config.json
# what an OpenVLA checkpoint holds besides config and weights: remote code, tokenizer and image processor
PROCESSOR_FILES = ("*.py", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "preprocessor_config.json",
                   "processor_config.json")


config = None  # loaded from model.path only
BUILD_KEYS: list[str] = []


class CheckpointFiles:
    """OpenVLA's processor (tokenizer + image transform) as loaded from its checkpoint folder; saving copies the
    folder's own remote code and processor files as they were, so `trust_remote_code` loading works from the
    export as from the original."""

    def __init__(self, processor, source: Path):
        self.processor, self.source = processor, source

    def save_pretrained(self, directory: Path) -> None:
        for pattern in PROCESSOR_FILES:
            for source in self.source.glob(pattern):
                shutil.copy(source, Path(directory) / source.name)


def load(path: Path | None, build: dict, dtype: torch.dtype, cameras: tuple[str, ...], statistics=None,
         dataset_name: str = "libero") -> tuple[nn.Module, CheckpointFiles]:
    """OpenVLA from its checkpoint folder, the training statistics in its `norm_stats[dataset_name]` (what its own
    predict_action un-normalises with)."""
    path = Path(path)
    check_openvla_directory(path)
    processor = load_openvla_processor(path)
    model = load_openvla(path, load_kwargs(dtype))
    if statistics is not None:
        model.config.norm_stats = {**(getattr(model.config, "norm_stats", None) or {}), dataset_name: statistics.to_json()}
    return model, CheckpointFiles(processor, path)


def checkpointed_modules(vla: nn.Module) -> list[nn.Module]:
    return [vla]


def load_policy(path: Path, device="cpu"):
    raise InputError(f"{path} holds an OpenVLA checkpoint: LARA trains it, and it acts through its own remote code "
                     "(`predict_action`, transformers 4.40, docs/wrap.md \"Backbones\"), not as a `lara` policy here")


class Processor:
    """Reader samples -> OpenVLA's fine-tuning inputs (+ the LARA keys), from its checkpoint's processor."""

    def __init__(self, model_config, statistics=None, tokenizer: CheckpointFiles | None = None, dtype=torch.float32):
        if tokenizer is None:
            raise InputError("OpenVLA's processor needs the checkpoint's own tokenizer and image transform (load)")
        self.processor, self.tokenizer, self.dtype = tokenizer.processor, tokenizer.processor.tokenizer, dtype
        self.action_tokenizer = ActionTokenizer(self.tokenizer.vocab_size)
        self.space_id = self.tokenizer.convert_tokens_to_ids("▁")  # Llama's 29871: OpenVLA's predict_action appends it
        if self.space_id in (None, self.tokenizer.unk_token_id) or self.tokenizer.pad_token_id is None:
            raise InputError(f"{tokenizer.source}: OpenVLA's tokenizer (Llama-2 sentencepiece with a pad token) was "
                             "expected; this one has no '▁' token or no pad token")

    def __call__(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        if lara.get("lam_action_free"):
            # no robot action: the neutral action (bin of 0) keeps the action positions; LaraModel leaves the
            # base loss of this batch out
            actions = np.zeros((len(samples), ACTION_DIM), np.float32)
        else:
            actions = torch.stack([s["actions"][0] for s in samples]).numpy()  # a_t, normalised
        rows, labels = [], []
        for sample, action_ids in zip(samples, self.action_tokenizer.encode(actions)):
            ids = self.tokenizer(prompt(sample["instruction"]), add_special_tokens=True)["input_ids"]
            tail = [int(t) for t in action_ids] + [self.tokenizer.eos_token_id]
            rows.append(ids + [self.space_id] + tail)
            labels.append([IGNORE_INDEX] * (len(rows[-1]) - len(tail)) + tail)  # loss on actions + EOS only
        batch = right_pad(rows, self.tokenizer.pad_token_id, labels)
        transform = self.processor.image_processor.apply_transform  # finetune.py's per-image transform
        images = [Image.fromarray(s["image"].permute(1, 2, 0).numpy()) for s in samples]  # uint8 (H, W, 3)
        batch["pixel_values"] = torch.stack([transform(image) for image in images])
        return {**cast(batch, self.dtype), **lara}


def load_openvla(path: Path, load_kwargs: dict | None = None) -> nn.Module:
    """AutoModelForVision2Seq with trust_remote_code (transformers 4.x, OpenVLA's own loading); transformers 5
    has no such Auto class any more, so there the class its config.json's auto_map names is loaded directly.
    `load_kwargs`: the dtype (finetune.py loads OpenVLA in bf16)."""
    import transformers

    load_kwargs = load_kwargs or {}
    auto = getattr(transformers, AUTO_CLASS, None)
    if auto is not None:
        return auto.from_pretrained(path, trust_remote_code=True, local_files_only=True, **load_kwargs)
    reference = json.loads((path / "config.json").read_text())["auto_map"][AUTO_CLASS]
    return remote_class(path, reference).from_pretrained(path, **load_kwargs)


def load_openvla_processor(path: Path):
    """AutoProcessor with trust_remote_code (transformers 4.x, OpenVLA's own loading). transformers 5's
    `ImageProcessingMixin.from_dict` reads a `valid_kwargs` class attribute that an image processor written for
    4.x (processing_prismatic's, an ImageProcessingMixin) lacks, so there the classes preprocessor_config.json
    names are built directly: the image processor from that file's fields, the tokenizer by AutoTokenizer."""
    import transformers
    from transformers import AutoProcessor, AutoTokenizer

    if int(transformers.__version__.split(".")[0]) < 5:
        return AutoProcessor.from_pretrained(path, trust_remote_code=True, local_files_only=True)
    config = json.loads((path / "preprocessor_config.json").read_text())
    auto_map = config.get("auto_map", {})
    if not {"AutoImageProcessor", "AutoProcessor"} <= auto_map.keys():
        raise InputError(f"{path}/preprocessor_config.json: expected auto_map entries AutoImageProcessor and "
                         f"AutoProcessor (OpenVLA's processing_prismatic classes), found {sorted(auto_map)}")
    fields = {k: v for k, v in config.items() if k not in ("auto_map", "image_processor_type", "processor_class")}
    image_processor = remote_class(path, auto_map["AutoImageProcessor"])(**fields)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return remote_class(path, auto_map["AutoProcessor"])(image_processor=image_processor, tokenizer=tokenizer)


def remote_class(path: Path, reference: str) -> type:
    """The class `module.Name` of the checkpoint's own code; one line naming the supported transformers when
    that code does not import under the installed one."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    try:
        return get_class_from_dynamic_module(reference, path, local_files_only=True)
    except ImportError as error:
        raise InputError(f"{path}: the checkpoint's remote code ({reference}) does not import under transformers "
                         f"{transformers.__version__} ({error}); OpenVLA's remote code is written for "
                         "transformers 4.40.x: run it in a venv with transformers==4.40.* (docs/wrap.md \"Backbones\")")


def check_openvla_directory(path: Path) -> None:
    """A clear error for a model.path that is not a local OpenVLA checkpoint with its remote code."""
    config = path / "config.json"
    if not config.is_file():
        raise MissingPath(f"model.path={path} holds no config.json: expected a local OpenVLA checkpoint "
                                "(a snapshot of openvla/openvla-7b with its modeling_prismatic.py)")
    content = json.loads(config.read_text())
    if content.get("model_type") != "openvla":
        raise InputError(f"model.path={path} holds a {content.get('model_type')!r} model, but model.family='openvla' "
                         "needs an OpenVLA checkpoint (config.json model_type 'openvla')")
    if AUTO_CLASS not in content.get("auto_map", {}):
        raise InputError(f"model.path={path}: config.json has no auto_map entry {AUTO_CLASS!r}; OpenVLA checkpoints "
                         "name their remote modeling class there (modeling_prismatic.OpenVLAForActionPrediction)")
