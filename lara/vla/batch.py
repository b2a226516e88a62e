"""What every backbone's processor shares: the LARA keys of a batch, right padding, the dtype cast, the prompt
(OpenVLA's, which TokenVLA and OpenVLA read) and openpi's instruction cleaning (pi0, pi0.5)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

IGNORE_INDEX = -100


def lara_inputs(samples: list[dict]) -> dict:
    """The LARA keys of a batch: lam_frames [B, 2, 3, H, W] uint8, lam_valid [B], and, where the samples have
    robot actions, lam_actions [B, k, 7] + lam_action_mask [B, k]; `lam_action_free` when none has actions."""
    batch = {
        "lam_frames": torch.stack([s["lam_frames"] for s in samples]),
        "lam_valid": torch.stack([torch.as_tensor(s["lam_valid"]) for s in samples]),
    }
    with_actions = ["lam_actions" in s for s in samples]
    if any(with_actions) and not all(with_actions):
        raise ValueError("a batch mixes samples with and without actions; the sampler draws each batch from one source")
    if all(with_actions):
        batch["lam_actions"] = torch.stack([s["lam_actions"] for s in samples])
        batch["lam_action_mask"] = torch.stack([s["lam_action_mask"] for s in samples])
    else:
        batch["lam_action_free"] = True
    return batch


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, labels: Sequence[Sequence[int]] | None = None
              ) -> dict[str, torch.Tensor]:
    """Token rows of different lengths -> input_ids, attention_mask (and labels, padded with IGNORE_INDEX) (B, T)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)], attention[i, : len(row)] = torch.tensor(list(row), dtype=torch.long), 1
    batch = {"input_ids": input_ids, "attention_mask": attention}
    if labels is not None:
        batch["labels"] = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, row in enumerate(labels):
            batch["labels"][i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return batch


def cast(batch: dict, dtype: torch.dtype) -> dict:
    """The floating inputs in the VLA's dtype: pi0's state and action projections, for one, do not cast them."""
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}


def prompt(instruction: str) -> str:
    """OpenVLA's PurePromptBuilder turn, as its finetune.py builds it (instruction lower-cased)."""
    return f"In: What action should the robot take to {instruction.strip().lower()}?\nOut:"


def clean_instruction(instruction: str) -> str:
    """openpi's prompt cleaning: underscores and newlines become spaces, whitespace collapsed."""
    return " ".join(instruction.replace("_", " ").split())


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build a new model's weights in `dtype` directly (a 3B pi0 in bf16 never exists in fp32)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def load_kwargs(dtype: torch.dtype) -> dict:
    """`from_pretrained` keywords that load the weights in `dtype` directly (no fp32 copy on the way):
    transformers >= 4.56 calls it `dtype`, earlier ones (4.40 for OpenVLA's remote code) `torch_dtype`."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}
