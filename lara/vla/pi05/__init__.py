"""pi0.5 (transformers `PI05ForConditionalGeneration`, the LARA release's backbone): pi0's layout without a state
input. The robot state, mapped to [-1, 1] with the dataset's q01/q99 and cut into 256 bins, is written into the
prompt as openpi's pi0.5 and transformers' PI05Processor do:

    [<image> x cameras x patches] [BOS] "Task: {instruction}, State: {b_1} ... {b_8};\\nAction: "

(samples without a state, action-free video, leave ", State: ..." out, as PI05Processor does for state=None).
Values outside the training quantiles are clipped to the first and last bin. Everything else (images, actions,
the byte tokens of a pi0.5 built without a tokenizer, loading, the policy) is pi0's.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

# checkpointed_modules: the SigLIP tower only, as pi0 (pi0.5's prefix LM hands its KV cache to the expert too)
from lara.vla.pi0.model import _transformers_class, check_sizes, checkpointed_modules, gemma_configs, load_flow_model
from lara.vla.pi0.policy import FlowPolicy, load_flow_policy
from lara.vla.pi0.processor import Processor as PI0Processor

STATE_BINS = 256


def pi05_config(width: int = 32, expert_width: int = 16, layers: int = 2, image_size: int = 32, patch_size: int = 8,
                vision_layers: int = 1, chunk_size: int = 4, action_dim: int = 8, heads: int = 2, vocab_size: int = 128):
    """A PI05Config of any size (the keywords of lara.vla.pi0.pi0_config; `action_dim`: max_action_dim)."""
    check_sizes(**{k: v for k, v in locals().items()})
    _transformers_class("PI05ForConditionalGeneration")
    from transformers import PI05Config

    return PI05Config(**gemma_configs(width, expert_width, layers, image_size, patch_size, vision_layers, heads,
                                      vocab_size),
                      chunk_size=chunk_size, max_action_dim=action_dim, num_inference_steps=2)


def tiny_pi05(**kw):
    return _transformers_class("PI05ForConditionalGeneration")(pi05_config(**kw))


config = pi05_config
BUILD_KEYS = list(inspect.signature(pi05_config).parameters)


def discretize_state(proprio: torch.Tensor, statistics) -> list[int]:
    """(D,) raw state -> D bins in 0..255: q01/q99 to [-1, 1] (PI05Processor's quantile normalisation), clipped,
    then `bucketize(linspace(-1, 1, 257)[:-1], right=True) - 1` as PI05Processor.build_prompts does."""
    x = proprio.float()
    stats = statistics.proprio if statistics is not None else None
    if stats is not None:
        q01, q99 = (torch.as_tensor(a, dtype=torch.float32) for a in (stats.q01, stats.q99))
        span = q99 - q01
        x = 2.0 * (x - q01) / torch.where(span == 0, torch.full_like(span, 1e-8), span) - 1.0
    bins = torch.linspace(-1, 1, STATE_BINS + 1)[:-1]
    return (torch.bucketize(x.clamp(-1, 1), bins, right=True) - 1).tolist()


class Processor(PI0Processor):
    """pi0's processor with pi0.5's prompt (its config has no max_state_dim: no `state` input)."""

    name = "pi05"

    def prompt(self, instruction: str, proprio: torch.Tensor | None) -> str:
        task = instruction.strip().replace("_", " ").replace("\n", " ")  # PI05Processor's cleaning
        state = "" if proprio is None else ", State: " + " ".join(map(str, discretize_state(proprio, self.statistics)))
        return f"Task: {task}{state};\nAction: "


def load(path: Path | None, build: dict, dtype: torch.dtype, cameras: tuple[str, ...], statistics=None,
         dataset_name: str = "libero"):
    """From `path` (with its tokenizer) or built from `build`, as pi0."""
    return load_flow_model("PI05ForConditionalGeneration", "pi05", pi05_config, path, build, dtype, cameras)


def load_policy(path: Path, device="cpu") -> FlowPolicy:
    """A pi0.5 saved by PI05ForConditionalGeneration.save_pretrained (e.g. RUN/final/vla)."""
    return load_flow_policy(path, _transformers_class("PI05ForConditionalGeneration"), Processor, device)


__all__ = ["BUILD_KEYS", "Processor", "checkpointed_modules", "config", "discretize_state", "load", "load_policy",
           "pi05_config", "tiny_pi05"]
