"""Small model configs built locally (no hub): tests, the demo and the overhead benchmark use them.

`tiny` models run a training step in milliseconds on a CPU core; the `mid` pi0 keeps the ratio of a
3B pi0's FLOPs to the default LAM's while shrinking both (see benchmarks/perf/overhead.py).
"""

from __future__ import annotations

import inspect

import torch

from lara.vla.token_vla import TokenVLA, TokenVLAConfig


def token_vla_config(width: int = 64, layers: int = 2, image_size: int = 32, vocab_size: int = 1024,
                     patch_size: int = 8, vision_type: str = "siglip", **kw) -> TokenVLAConfig:
    """A small TokenVLA. `vision_type='resnet'`: a 3-stage basic-block ResNet (widths width/4, width/2, width;
    stride 16, so a 64 px image gives 4 x 4 patches) instead of the 1-layer SigLIP tower with `patch_size`.
    Other keywords (chunk_size, action_head, cameras, proprio_dim, image_shift, ...) go to TokenVLAConfig."""
    if vision_type == "resnet":
        vision = dict(num_channels=3, embedding_size=width // 4, hidden_sizes=[width // 4, width // 2, width],
                      depths=[1, 1, 1], layer_type="basic", hidden_act="relu", downsample_in_first_stage=False)
        kw["image_size"] = image_size
    else:
        vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                      image_size=image_size, patch_size=patch_size)
    text = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2,
                num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=0,
                bos_token_id=1, eos_token_id=2)
    return TokenVLAConfig(vision_config=vision, text_config=text, vision_type=vision_type, **kw)


def build_keys(family: str) -> list[str]:
    """The keywords a recipe's `model.build` may hold for `family`: its preset function's and, for token_vla,
    TokenVLAConfig's own. A transformers config keeps any unknown keyword silently, so recipes check these."""
    def named(function, skip=()) -> list[str]:
        parameters = inspect.signature(function).parameters.values()
        return [p.name for p in parameters if p.kind is not p.VAR_KEYWORD and p.name != "self" and p.name not in skip]

    # token_vla: the preset builds vision / text configs from its keywords; training sets norm_stats, and
    # latent_codes (the recipe latent_pretrain adds the rows for its LAM's codebook)
    if family == "token_vla":
        own = named(TokenVLAConfig.__init__, skip=("vision_config", "text_config", "norm_stats", "proprio_stats",
                                                    "cameras", "image_size", "latent_codes"))
        return named(token_vla_config) + own
    if family == "pi0":
        return named(pi0_config)
    return []  # openvla: loaded from model.path only


def tiny_token_vla(**kw) -> TokenVLA:
    return TokenVLA(token_vla_config(**kw))


def pi0_config(width: int = 32, expert_width: int = 16, layers: int = 2, image_size: int = 32, patch_size: int = 8,
               vision_layers: int = 1, chunk_size: int = 4, action_dim: int = 8, heads: int = 2, vocab_size: int = 128):
    """A PI0Config of any size; needs a transformers with PI0ForConditionalGeneration (5.x)."""
    try:
        from transformers import PI0Config
    except ImportError as err:
        import transformers

        raise ImportError(
            f"the 'pi0' backbone needs transformers' PI0ForConditionalGeneration, which transformers "
            f"{transformers.__version__} does not have: pip install 'transformers>=5.3'"
        ) from err
    head_dim = width // heads
    return PI0Config(
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
        chunk_size=chunk_size, max_state_dim=action_dim, max_action_dim=action_dim, num_inference_steps=2,
    )


def pi0_batch(cfg, batch_size: int, text_len: int = 16, device: str = "cpu", seed: int = 0) -> dict:
    """Training inputs of PI0ForConditionalGeneration for `cfg`: one camera, random text, state and actions."""
    vision = cfg.vlm_config.vision_config
    n_image = (vision.image_size // vision.patch_size) ** 2
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, cfg.vlm_config.image_token_id, (batch_size, text_len), generator=g)
    ids = torch.cat([torch.full((batch_size, n_image), cfg.vlm_config.image_token_id), text], 1).to(device)
    return dict(
        state=torch.randn(batch_size, cfg.max_state_dim, generator=g).to(device),
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=torch.randn(batch_size, 1, 3, vision.image_size, vision.image_size, generator=g).to(device),
        pixel_attention_mask=torch.ones(batch_size, 1, dtype=torch.bool, device=device),
        actions=torch.randn(batch_size, cfg.chunk_size, cfg.max_action_dim, generator=g).to(device),
    )


def tiny_pi0(**kw):
    from transformers import PI0ForConditionalGeneration

    return PI0ForConditionalGeneration(pi0_config(**kw))
