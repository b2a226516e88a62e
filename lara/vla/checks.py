"""Sanity checks on a loaded VLA.

transformers >= 4.50 silently drops OpenVLA's vision tower when its remote code is loaded (the
weights load, the image is ignored): a policy that does not look at the camera still produces
plausible-looking actions. `image_dependence` catches it before any rollout, on OpenVLA's own class
(config `image_sizes`, its Llama tokenizer) as on the reference TokenVLA (`vision_config`, byte tokens).
"""

from __future__ import annotations

import torch

from lara.vla.token_vla.tokenizer import build_example, collate, prompt


def _pixel_shape(config) -> tuple[int, int]:
    """(channels, size) of the pixel values: TokenVLA's SigLIP `vision_config`, or OpenVLA's `image_sizes`
    (its fused DINOv2 + SigLIP backbone takes both transforms stacked: 6 channels)."""
    vision = getattr(config, "vision_config", None)
    if vision is not None:  # a TokenVLA with a ResNet tower keeps the size on its own config
        return 3, int(getattr(vision, "image_size", None) or config.image_size)
    sizes = getattr(config, "image_sizes", None)
    if sizes:
        return (6 if getattr(config, "use_fused_vision_backbone", False) else 3), int(sizes[0])
    raise ValueError(f"{type(config).__name__} has neither `vision_config.image_size` (TokenVLA) nor `image_sizes` "
                     "(OpenVLA): cannot tell the image size to test with")


def _prompt_ids(model, tokenizer, instruction: str) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (1, T) of the policy prompt: the model's own tokenizer for OpenVLA (the one
    saved beside it when none is given), TokenVLA's byte tokens otherwise."""
    if tokenizer is None and getattr(model.config, "model_type", None) == "openvla":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model.name_or_path, local_files_only=True)
    if tokenizer is None:
        batch = collate([build_example(instruction, None)])
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    ids = tokenizer(prompt(instruction), return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def image_dependence(model, instruction: str = "pick up the object", tolerance: float = 1e-6,
                     tokenizer=None) -> float:
    """Largest change of the next-token logits between two different images; raises if there is none.
    `tokenizer`: the model's own (OpenVLA: `processor.tokenizer`); by default OpenVLA's is loaded from
    `model.name_or_path` and TokenVLA uses its byte tokens."""
    channels, size = _pixel_shape(model.config)
    device = next(model.parameters()).device
    text = {k: v.to(device) for k, v in _prompt_ids(model, tokenizer, instruction).items()}
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, channels, size, size, generator=g).to(device) * 2 - 1
    logits = [model(**text, pixel_values=image[None]).logits[0, -1] for image in images]
    change = float((logits[0] - logits[1]).abs().max())
    if change <= tolerance:
        raise RuntimeError(
            f"the policy's outputs do not depend on the image (max logit change {change:.2e}): the vision "
            "tower is disconnected, as happens to OpenVLA's remote code under transformers >= 4.50. "
            "Load OpenVLA with transformers==4.40.1."
        )
    return change
