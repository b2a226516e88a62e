"""pi0 (transformers PI0ForConditionalGeneration): a flow-matching action expert predicting action chunks.

`load`: from a local checkpoint (save_pretrained layout) with the tokenizer saved with it, if any (local files
only), or built from `model.build` (`config`: any size); such a pi0 has no tokenizer and sees the instruction
through `ByteTokenizer`. pi0 samples its flow time and noise inside forward, from the global RNG the trainer
checkpoints. pi0.5 (lara/vla/pi05) loads the same way.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from lara.errors import InputError, MissingPath
from lara.vla.batch import default_dtype, load_kwargs
from lara.vla.pi0.policy import has_tokenizer
from lara.vla.pi0.processor import CAMERAS_KEY


def _transformers_class(name: str):
    import transformers

    if not hasattr(transformers, name):
        raise ImportError(f"this backbone needs transformers' {name}, which transformers {transformers.__version__} "
                          "does not have: pip install 'transformers>=5.3'")
    return getattr(transformers, name)


TEXT_IDS = 5  # pad 0, eos 1, bos 2 (Gemma's defaults), <image> (the last id) and at least one id for text


def check_sizes(**sizes) -> None:
    """The `model.build` of pi0 / pi0.5 (the keywords of `pi0_config`), refused as an InputError naming the key when
    it cannot build or train: transformers' own checks fail deep in a config's validators, or only at the first
    forward (an image smaller than a patch)."""
    from lara.vla.pi0.processor import ACTION_DIM

    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"model.build.{name} must be an integer >= 1, got {value!r}")
    width, heads = sizes["width"], sizes["heads"]
    if width % heads or (width // heads) % 2:
        raise InputError(f"model.build.width ({width}) must be divisible by model.build.heads ({heads}) into an even "
                         "head size (RoPE rotates pairs of dimensions), e.g. width 32 with 2 heads")
    if sizes["expert_width"] % heads:
        raise InputError(f"model.build.expert_width ({sizes['expert_width']}) must be divisible by model.build.heads "
                         f"({heads}): the action expert has as many heads")
    if sizes["image_size"] < sizes["patch_size"]:
        raise InputError(f"model.build.image_size ({sizes['image_size']}) is smaller than one patch "
                         f"(model.build.patch_size={sizes['patch_size']}): the vision tower would see no patch")
    if sizes["vocab_size"] < TEXT_IDS:
        raise InputError(f"model.build.vocab_size ({sizes['vocab_size']}) leaves no id for text besides pad, eos, bos "
                         f"and <image>: give at least {TEXT_IDS}")
    if sizes["action_dim"] < ACTION_DIM:
        raise InputError(f"model.build.action_dim ({sizes['action_dim']}) is smaller than the {ACTION_DIM}-D robot "
                         "actions the processor feeds it")


def gemma_configs(width: int, expert_width: int, layers: int, image_size: int, patch_size: int, vision_layers: int,
                  heads: int, vocab_size: int) -> dict:
    """vlm_config (PaliGemma: Gemma + SigLIP) and dit_config (the Gemma action expert) of any size."""
    head_dim = width // heads
    return dict(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(model_type="gemma", hidden_size=width, num_hidden_layers=layers, intermediate_size=4 * width,
                             num_attention_heads=heads, num_key_value_heads=1, head_dim=head_dim, vocab_size=vocab_size),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=width, intermediate_size=4 * width,
                               patch_size=patch_size, image_size=image_size, num_hidden_layers=vision_layers,
                               num_attention_heads=heads, vision_use_head=False),
            projection_dim=width, image_token_id=vocab_size - 1,
        ),
        dit_config=dict(model_type="gemma", hidden_size=expert_width, num_hidden_layers=layers,
                        intermediate_size=4 * expert_width, num_attention_heads=heads, num_key_value_heads=1,
                        head_dim=head_dim),
    )


def pi0_config(width: int = 32, expert_width: int = 16, layers: int = 2, image_size: int = 32, patch_size: int = 8,
               vision_layers: int = 1, chunk_size: int = 4, action_dim: int = 8, heads: int = 2, vocab_size: int = 128):
    """A PI0Config of any size (tests, benchmarks: the `mid` pi0 of benchmarks/perf keeps a 3B pi0's ratio of
    FLOPs to the default LAM's); needs a transformers with PI0ForConditionalGeneration (5.x)."""
    check_sizes(**{k: v for k, v in locals().items()})
    _transformers_class("PI0ForConditionalGeneration")
    from transformers import PI0Config

    return PI0Config(**gemma_configs(width, expert_width, layers, image_size, patch_size, vision_layers, heads,
                                     vocab_size),
                     chunk_size=chunk_size, max_state_dim=action_dim, max_action_dim=action_dim, num_inference_steps=2)


def pi0_batch(cfg, batch_size: int, text_len: int = 16, device: str = "cpu", seed: int = 0) -> dict:
    """Training inputs of PI0ForConditionalGeneration for `cfg`: one camera, random text, state and actions
    (pi0.5's config has no max_state_dim: no state then)."""
    vision = cfg.vlm_config.vision_config
    n_image = (vision.image_size // vision.patch_size) ** 2
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, cfg.vlm_config.image_token_id, (batch_size, text_len), generator=g)
    ids = torch.cat([torch.full((batch_size, n_image), cfg.vlm_config.image_token_id), text], 1).to(device)
    batch = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=torch.randn(batch_size, 1, 3, vision.image_size, vision.image_size, generator=g).to(device),
        pixel_attention_mask=torch.ones(batch_size, 1, dtype=torch.bool, device=device),
        actions=torch.randn(batch_size, cfg.chunk_size, cfg.max_action_dim, generator=g).to(device),
    )
    if getattr(cfg, "max_state_dim", None):
        batch["state"] = torch.randn(batch_size, cfg.max_state_dim, generator=g).to(device)
    return batch


def tiny_pi0(**kw):
    return _transformers_class("PI0ForConditionalGeneration")(pi0_config(**kw))


config = pi0_config
BUILD_KEYS = [name for name in inspect.signature(pi0_config).parameters]


def check_directory(path: Path, model_type: str, family: str) -> None:
    """A clear error for a model.path that is not a local checkpoint of `model_type`."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise MissingPath(f"model.path={path} holds no config.json: expected a local {family} checkpoint written by "
                          "save_pretrained (or leave model.path unset to build one from model.build)")
    found = json.loads(config_file.read_text()).get("model_type")
    if found != model_type:
        raise InputError(f"model.path={path} holds a {found!r} model, but model.family='{family}' needs a {family} "
                         f"checkpoint (config.json model_type '{model_type}'); pick the family that matches the "
                         "checkpoint")


def load_flow_model(class_name: str, model_type: str, make_config, path: Path | None, build: dict,
                    dtype: torch.dtype, cameras: tuple[str, ...]) -> tuple[nn.Module, object]:
    """A flow-matching VLA (and the tokenizer saved with it) from `path`, or built from `build`; the cameras it is
    trained on are kept in its config (the policy reads the same)."""
    from transformers import AutoTokenizer

    model_class, tokenizer = _transformers_class(class_name), None
    if path is None:
        with default_dtype(dtype):
            model = model_class(make_config(**build))
    else:
        check_directory(path, model_type, model_type)
        model = model_class.from_pretrained(path, local_files_only=True, **load_kwargs(dtype))
        if has_tokenizer(path):
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    setattr(model.config, CAMERAS_KEY, list(cameras))
    return model, tokenizer


def load(path: Path | None, build: dict, dtype: torch.dtype, cameras: tuple[str, ...], statistics=None,
         dataset_name: str = "libero"):
    """pi0 reads its statistics from the processor (state) and the policy (actions), not from its config."""
    return load_flow_model("PI0ForConditionalGeneration", "pi0", pi0_config, path, build, dtype, cameras)


def checkpointed_modules(vla: nn.Module) -> list[nn.Module]:
    """The SigLIP tower only. transformers' PI0 hands the prefix LM's KV cache to the action expert, and a
    checkpointed decoder layer drops its cache (the recompute would write it twice): checkpointing the LM or
    the expert fails in transformers 5.x (`'NoneType' object has no attribute 'get_seq_length'`)."""
    return [vla.model.vlm.vision_tower]
