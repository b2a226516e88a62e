"""Sanity checks on a loaded VLA.

transformers >= 4.50 silently drops OpenVLA's vision tower when its remote code is loaded (the
weights load, the image is ignored): a policy that does not look at the camera still produces
plausible-looking actions. `image_dependence` catches it before any rollout.
"""

from __future__ import annotations

import torch

from lara.vla.tokenizer import build_example, collate


@torch.no_grad()
def image_dependence(model, instruction: str = "pick up the object", tolerance: float = 1e-6) -> float:
    """Largest change of the action-token logits between two different images; raises if there is none."""
    size = model.config.vision_config.image_size
    device = next(model.parameters()).device
    batch = collate([build_example(instruction, None)])
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, size, size, generator=g).to(device) * 2 - 1
    logits = [
        model(input_ids=batch["input_ids"].to(device), pixel_values=image[None]).logits[0, -1]
        for image in images
    ]
    change = float((logits[0] - logits[1]).abs().max())
    if change <= tolerance:
        raise RuntimeError(
            f"the policy's outputs do not depend on the image (max logit change {change:.2e}): the vision "
            "tower is disconnected, as happens to OpenVLA's remote code under transformers >= 4.50. "
            "Load OpenVLA with transformers==4.40.1."
        )
    return change
