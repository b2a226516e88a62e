"""pi0 (transformers PI0ForConditionalGeneration): a flow-matching action expert predicting action chunks.

`model.path`: a local pi0 checkpoint (save_pretrained layout) and the tokenizer saved with it, if any (local
files only). Without it a pi0 is built from `model.build` (lara.vla.presets.pi0_config); such a pi0 has no
tokenizer and sees the instruction through lara.vla.pi0.ByteTokenizer. The inputs are built by
lara.vla.pi0.PI0Inputs, the same code the pi0 policy runs at evaluation. pi0 samples its flow time and noise
inside forward, from the global RNG the trainer checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lara.data.statistics import save_statistics
from lara.errors import InputError, MissingPath
from lara.vla.pi0 import CAMERAS_KEY, PI0Inputs, has_tokenizer
from lara.vla.presets import pi0_config

from .base import Family, lara_inputs


class PI0Family(Family):
    name = "pi0"

    def build(self) -> nn.Module:
        from transformers import AutoTokenizer, PI0ForConditionalGeneration

        path, self.tokenizer = self.config.path, None
        if path is None:
            with self.building():
                model = PI0ForConditionalGeneration(pi0_config(**self.config.build))
        else:
            check_pi0_directory(path)
            model = PI0ForConditionalGeneration.from_pretrained(path, local_files_only=True, **self.load_kwargs())
            if has_tokenizer(path):
                self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        setattr(model.config, CAMERAS_KEY, list(self.cameras))  # the policy reads the same cameras
        self.inputs = PI0Inputs(model.config, self.statistics, self.tokenizer, self.cameras)
        return model

    @classmethod
    def checkpointed_modules(cls, vla: nn.Module) -> list[nn.Module]:
        """The SigLIP tower only. transformers' PI0 hands the prefix LM's KV cache to the action expert, and a
        checkpointed decoder layer drops its cache (the recompute would write it twice): checkpointing the LM or
        the expert fails in transformers 5.x (`'NoneType' object has no attribute 'get_seq_length'`)."""
        return [vla.model.vlm.vision_tower]

    def collate(self, samples: list[dict]) -> dict:
        lara = lara_inputs(samples)
        batch_size = len(samples)
        input_ids, attention_mask = self.inputs.text([s["instruction"] for s in samples])
        views = [torch.stack([s["image"] for s in samples])]  # (B, 3, H, W) of data.camera
        views += [torch.stack([s[camera] for s in samples]) for camera in self.cameras[1:]]
        pixel_values, pixel_attention_mask = self.inputs.images(views)
        if lara.get("lam_action_free"):
            # no robot action or state: neutral (zero) ones keep the action positions; LaraModel leaves the
            # base loss of this batch out
            proprio = None
            actions = torch.zeros(batch_size, self.inputs.chunk_size, self.inputs.max_action_dim)
        else:
            proprio = torch.stack([s["proprio"] for s in samples])  # (B, 8) raw
            actions = self.inputs.actions(torch.stack([s["actions"] for s in samples]))  # (B, chunk, max_action_dim)
        batch = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                     pixel_attention_mask=pixel_attention_mask, state=self.inputs.state(proprio, batch_size),
                     actions=actions)
        return {**self.cast(batch), **lara}

    def save(self, model: nn.Module, directory: Path) -> None:
        """Weights (a peft model: its adapter), the tokenizer it was loaded with, and the action / proprio
        statistics, so the directory alone is a policy (`lara.vla.load_policy`)."""
        model.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        if self.statistics is not None:
            save_statistics(self.statistics, directory, self.dataset_name)


def check_pi0_directory(path: Path) -> None:
    """A clear error for a model.path that is not a local pi0 checkpoint."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise MissingPath(f"model.path={path} holds no config.json: expected a local pi0 checkpoint written by "
                                "PI0ForConditionalGeneration.save_pretrained (or leave model.path unset to build one "
                                "from model.build)")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "pi0":
        raise InputError(f"model.path={path} holds a {model_type!r} model, but model.family='pi0' needs a pi0 "
                         "checkpoint (config.json model_type 'pi0'); pick the family that matches the checkpoint")
